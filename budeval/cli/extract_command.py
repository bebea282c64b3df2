"""``budeval extract``: a finished OpenCompass run folder into the store and the archive, with the workflow's own
steps (:func:`budeval.workflow.steps.extract_folder`), so its rows, status and provenance are the workflow's.

An evaluation the workflow recorded is refused (one line, exit 1) unless ``--force``, which replaces that run's rows
(never duplicates them) and judges the evaluation again. Errors are :mod:`budeval.errors` exceptions that
``budeval.cli.main`` prints as one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from budeval.cli.common import emit_json, json_arg, score_table, store_arg, writing_store
from budeval.config import Settings
from budeval.errors import TerminalError, ValidationError
from budeval.schemas.ids import check_dns_label
from budeval.schemas.results import ParsedRun
from budeval.storage.factory import open_archive
from budeval.workflow.steps import extract_folder


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("extract", help="parse a finished OpenCompass run, store its rows, archive its files")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the OpenCompass --work-dir (timestamp folders)")
    p.add_argument("--eval-id", required=True, help="evaluation id (DNS label)")
    p.add_argument("--run-id", default="r0", help="run id within the evaluation (default r0)")
    p.add_argument(
        "--force", action="store_true", help="replace this run's rows in an evaluation the workflow recorded"
    )
    store_arg(p)
    p.add_argument("--archive", metavar="URL",
                   help="a folder path, file:///path or s3://bucket?endpoint=... (BUDEVAL_ARCHIVE_URL)")
    p.add_argument("--no-archive", action="store_true", help="store rows only")
    json_arg(p)
    p.set_defaults(func=cmd_extract)


def _parse(run_dir: Path) -> ParsedRun:
    from budeval.engine.results import parse_run  # the OpenCompass engine's reader

    parsed: ParsedRun = parse_run(run_dir)
    return parsed


def cmd_extract(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Extract ``RUN_DIR`` as ``--run-id`` of ``--eval-id``; prints the evaluation's scores and what was stored and
    archived (``--json``: one object). An archive that refuses exits 1 after the rows and the row are stored."""
    out = out or sys.stdout
    eval_id = check_dns_label(args.eval_id, "eval_id")
    run_id = check_dns_label(args.run_id, "run_id")
    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        raise ValidationError(f"{run_dir} is not a directory", field="RUN_DIR")
    settings = Settings.from_env()
    archive = None if args.no_archive else open_archive(args.archive or settings.resolved_archive_url())
    with writing_store(args) as store:
        done = extract_folder(
            store=store,
            parse=_parse,
            settings=settings,
            eval_id=eval_id,
            run_id=run_id,
            run_dir=run_dir,
            archive=archive,
            force=args.force,
        )
        rows = store.results(eval_id)
    archived, status = done.archived, done.record.status
    if archived is not None and archived.error:
        raise TerminalError(f"archive failed: {archived.error} (the rows of {eval_id}/{run_id} are stored)")
    if args.json:
        emit_json(
            {
                "eval_id": eval_id,
                "run_id": run_id,
                "status": status,
                "reason": done.record.reason,
                "stored": done.stored.model_dump(),
                "archive": archived.model_dump() if archived else None,
                "scores": [r.model_dump(mode="json") for r in rows],
            },
            out,
        )
        return 0
    score_table(rows, out)
    stored = done.stored
    out.write(f"\n{eval_id}/{run_id}: {status}; stored {stored.metrics} scores, {stored.predictions} predictions")
    if archived is not None:
        out.write(f"; archived to {archived.url} ({archived.uploaded} uploaded, {archived.skipped} unchanged)")
    out.write("\n")
    return 0
