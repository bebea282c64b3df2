"""The ``budeval`` command: one entry point; each concern registers its subcommands from its own module.

Contract relied on by scripts and checks: a failing command prints exactly one line ``budeval: error: <reason>`` on
stderr and exits non-zero (2 for usage errors, 1 for everything else, a setting that is not valid included);
``--json`` output is the only thing on stdout. A subcommand whose exit codes carry results (``gate``: 1 regression,
2 inconclusive) sets ``error_exit`` as a parser default: every error of its command line, settings or run exits
with that code instead.

Settings for every command: ``--settings FILE`` (instead of ``BUDEVAL_SETTINGS_FILE``) and ``--set NAME=VALUE``
(repeatable; above the environment and the file), before the command: ``budeval --set port=9000 serve``
(docs/settings.md).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from budeval.buildinfo import build_info
from budeval.config import cli_settings, parse_flags
from budeval.errors import BudevalError

#: Modules with a ``register(subparsers)`` function; each subcommand sets ``func(args) -> int`` via set_defaults.
COMMAND_MODULES = (
    "budeval.cli.extract_command",  # extract
    "budeval.cli.data_commands",  # results, leaderboard, compare, migrate
    "budeval.cli.service_commands",  # serve, status, cancel
    "budeval.cli.submit_command",  # submit
    "budeval.cli.identity_commands",  # plan, explain
    "budeval.cli.decision_commands",  # gate, series
    "budeval.cli.datasets_command",  # datasets check
    "budeval.cli.gc_command",  # gc (retention)
    "budeval.cli.suites_command",  # suites
    "budeval.cli.rejudge_command",  # rejudge
)


def version_text() -> str:
    """``budeval 0.1.0 (commit abc...)``: the installed version and its build commit (budeval/buildinfo.py)."""
    info = build_info()
    return f"budeval {info['version']} ({'commit ' + info['commit'] if info['commit'] else 'commit not stamped'})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="budeval", description="Kubernetes-native orchestrator for LLM evaluations")
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument("--settings", type=Path, default=None, metavar="FILE",
                        help="settings file (.yaml, .json, .toml or a dotenv file); default: $BUDEVAL_SETTINGS_FILE")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="set_values",
                        help="a setting above the environment and the file, e.g. port=9000 (repeatable)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    for sub in subparsers.choices.values():
        sub.add_argument("--version", action="version", version=version_text())
        sub.set_defaults(command_parser=sub)  # main(): unrecognized arguments are reported by the command's parser
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the subcommand's parser: its exit code for a bad command line (the gate's is 3)
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    func: Callable[[argparse.Namespace], int] = args.func
    error_exit: int = getattr(args, "error_exit", 1)
    try:
        with cli_settings(parse_flags(args.set_values), args.settings):
            return func(args)
    except BudevalError as exc:
        print(f"budeval: error: {exc}", file=sys.stderr)
        return error_exit
    except KeyboardInterrupt:
        print("budeval: error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
