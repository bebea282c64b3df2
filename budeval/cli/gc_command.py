"""``budeval gc``: retention by hand -- which evaluation folders leave the results volume (``--dry-run``: only show
them) and what the predictions TTL will expire. The rules are budeval/storage/retention.py's, the same the service's
housekeeping loop applies every ``results_gc_interval_s``; docs/storage.md "Retention".

It writes (removes folders), so like ``extract`` and ``migrate`` it opens the store itself: an embedded chDB store held
by a running ``budeval serve`` is refused with the holder named (leave it to the service's loop, or stop the service).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from budeval.cli.common import emit_json, json_arg, store_arg, table, writing_store
from budeval.config import Settings
from budeval.storage import retention
from budeval.storage.factory import open_archive


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "gc", help="remove archived evaluation folders from the results volume (retention); --dry-run shows them"
    )
    p.add_argument("--dry-run", action="store_true", help="only show what would be removed and why the rest stays")
    p.add_argument("--grace", type=float, default=None, metavar="SECONDS",
                   help="grace period after finish and archive (default: the setting results_grace_s)")
    store_arg(p)
    json_arg(p)
    p.set_defaults(func=cmd_gc)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def cmd_gc(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Plan (and unless ``--dry-run`` apply) retention; prints one line per evaluation folder and the TTL's effect.

    JSON: ``{"dry_run", "results_root", "grace_s", "folders": [...], "removed", "freed_bytes",
    "predictions_ttl_s", "predictions_expiring"}``."""
    out = out or sys.stdout
    settings = Settings.from_env()
    grace_s = settings.results_grace_s if args.grace is None else max(0.0, args.grace)
    root = settings.resolved_results_root()
    archive = open_archive(settings.resolved_archive_url(), settings)
    with writing_store(args) as store:
        verdicts = retention.collect(root, store, archive, grace_s, dry_run=args.dry_run)
        ttl_s = settings.predictions_ttl_s
        expiring = store.expiring_predictions(ttl_s)
    going = [v for v in verdicts if (v.action == "remove" if args.dry_run else v.removed)]
    freed = sum(v.bytes for v in going)
    if args.json:
        emit_json({"dry_run": args.dry_run, "results_root": str(root), "grace_s": grace_s,
                   "folders": [v.model_dump(mode="json") for v in verdicts], "removed": len(going),
                   "freed_bytes": freed, "predictions_ttl_s": ttl_s, "predictions_expiring": expiring}, out)
        return 0
    verb = "would remove" if args.dry_run else "removed"
    rows = [[(verb if v in going else "keep"), v.eval_id, _size(v.bytes), v.reason] for v in verdicts]
    if rows:
        table(["action", "evaluation", "size", "why"], rows, out)
    out.write(f"{verb} {len(going)} of {len(verdicts)} evaluation folders under {root} ({_size(freed)})\n")
    if ttl_s:
        out.write(f"predictions TTL {ttl_s} s: {expiring} rows are past it (gone at the table's next merges)\n")
    else:
        out.write("predictions TTL off (predictions_ttl_s 0): prediction rows are kept\n")
    return 0
