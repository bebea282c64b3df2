"""Helpers of the CLI tests: the subcommands in-process (output captured) or as the `budeval` command."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

from budeval.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "opencompass"


def parser() -> argparse.ArgumentParser:
    """The `budeval` command's parser (every subcommand module registered)."""
    return build_parser()


def run_cli(*argv: str) -> str:
    """Run one subcommand in this process; it must succeed. Returns what it printed."""
    args = parser().parse_args(list(argv))
    out = io.StringIO()
    assert args.func(args, out) == 0
    return out.getvalue()


def budeval_cmd(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The `budeval` command as a user runs it (a subprocess; ``env`` added to this process's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "budeval.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
