"""``budeval suites [--json]``: the suites of the search path (bundled, then the operator folders of ``suites_path``),
each with its datasets, their kind (bundled or stock) and the file it was read from. budeval/engine/catalog.py."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from budeval.cli.common import emit_json, json_arg, table
from budeval.config import Settings
from budeval.engine.catalog import BUNDLED, read_suites, suite_folders


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("suites", help="the suites a request may name, with their datasets and source files")
    json_arg(p)
    p.set_defaults(func=cmd_suites)


def cmd_suites(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    folders = suite_folders(Settings.from_env().suites_path)
    suites = read_suites(folders)
    if args.json:
        emit_json({
            "search_path": [str(f) for f in folders],
            "suites": [
                {"name": s.name, "description": s.description, "source": str(s.source),
                 "datasets": [{"name": d, "kind": "bundled" if d in BUNDLED else "stock"} for d in s.datasets]}
                for s in sorted(suites.values(), key=lambda s: s.name)
            ],
        }, out)
        return 0
    table(
        ("suite", "datasets", "source", "description"),
        [(s.name, ", ".join(s.datasets), str(s.source), s.description)
         for s in sorted(suites.values(), key=lambda s: s.name)],
        out,
    )
    out.write("search path: " + " : ".join(str(f) for f in folders) + "\n")
    return 0
