"""The ``budeval`` command: one entry point; each concern registers its subcommands from its own module.

Contract relied on by scripts and checks: a failing command prints exactly one line ``budeval: error: <reason>`` on
stderr and exits non-zero (2 for usage errors, 1 for everything else); ``--json`` output is the only thing on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from budeval.errors import BudevalError

#: Modules with a ``register(subparsers)`` function; each subcommand sets ``func(args) -> int`` via set_defaults.
COMMAND_MODULES = (
    "budeval.cli.extract_command",  # extract
    "budeval.cli.data_commands",  # results, leaderboard, compare, migrate
    "budeval.cli.service_commands",  # serve, submit, status, cancel
    "budeval.cli.identity_commands",  # plan, explain
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="budeval", description="Kubernetes-native orchestrator for LLM evaluations")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BudevalError as exc:
        print(f"budeval: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("budeval: error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
