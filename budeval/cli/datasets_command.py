"""``budeval datasets check``: does a folder (a datasets volume) hold the data files a suite's datasets read?

``budeval datasets check (--suite NAME | --dataset NAME ...) [--root PATH] [--json]``: one line per dataset on stdout
(``ok``, ``missing`` with the paths, ``bundled``, or ``unknown`` when no paths are recorded for this OpenCompass
version); exit 0 when everything is there, else 1 with one ``budeval: error:`` line naming what is missing.
``--root`` defaults to ``COMPASS_DATA_CACHE`` (the setting ``compass_data_cache``). budeval/engine/datacheck.py
has the rules; docs/kubernetes.md "Stock datasets" says how to fill a volume.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from budeval.cli.common import emit_json, json_arg
from budeval.config import Settings
from budeval.errors import NotFoundError, ValidationError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("datasets", help="the data files of stock OpenCompass datasets")
    sub = p.add_subparsers(dest="datasets_command", required=True, metavar="COMMAND")
    c = sub.add_parser("check", help="check that a folder has the data files a suite's datasets need")
    which = c.add_mutually_exclusive_group(required=True)
    which.add_argument("--suite", help="a suite (workflows/*.yaml) by name")
    which.add_argument("--dataset", action="append", help="a bundled or stock dataset name (repeatable)")
    c.add_argument("--root", type=Path, help="the folder to check (default: COMPASS_DATA_CACHE)")
    json_arg(c)
    c.set_defaults(func=cmd_datasets_check)


def cmd_datasets_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from budeval.engine.catalog import load_suites
    from budeval.engine.datacheck import check_data

    out = out or sys.stdout
    settings = Settings.from_env()
    root = args.root if args.root is not None else (Path(settings.compass_data_cache) if
                                                    settings.compass_data_cache else None)
    if root is None:
        raise ValidationError("give --root or set COMPASS_DATA_CACHE", field="root")
    if args.suite is not None:
        suites = load_suites(settings.suites_path)
        if args.suite not in suites:
            raise NotFoundError(f"no suite {args.suite!r} (known: {', '.join(sorted(suites)) or 'none'})")
        names, what = suites[args.suite], f"suite {args.suite}"
    else:
        names, what = list(dict.fromkeys(args.dataset)), "datasets"
    result = check_data(names, root, settings.engine_version)
    if args.json:
        emit_json({"root": str(root), "ok": result.ok, "missing": result.missing, "unchecked": result.unchecked,
                   "datasets": [{"name": d.name, "kind": d.kind, "ok": d.ok, "needed": d.needed,
                                 "missing": list(d.missing)} for d in result.datasets]}, out)
    else:
        out.write(f"{what} under {root} (OpenCompass {settings.engine_version}):\n")
        width = max(len(d.name) for d in result.datasets)
        for d in result.datasets:
            if d.kind == "bundled":
                state = "bundled  (travels in the rendered config)"
            elif d.needed is None:
                state = "unknown  (no data paths recorded for this OpenCompass version)"
            elif d.missing:
                state = "missing  " + " ".join(d.missing)
            else:
                state = "ok       " + " ".join(d.needed)
            out.write(f"  {d.name:<{width}}  {state}\n")
        out.flush()
    if result.ok:
        return 0
    parts = []
    if result.missing:
        parts.append(f"missing under {root}: {', '.join(result.missing)}")
    if result.unchecked:
        parts.append(f"cannot check {', '.join(result.unchecked)}")
    raise NotFoundError(f"{what}: " + "; ".join(parts))
