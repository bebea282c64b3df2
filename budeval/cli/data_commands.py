"""The data subcommands: extract a finished run into the store and archive, then query it (results, leaderboard,
compare) or prepare the store (migrate).

Defaults come from ``Settings.from_env()`` (``BUDEVAL_STORE_DSN``, ``BUDEVAL_ARCHIVE_URL``). With ``--json`` the JSON
document is the only thing on stdout; errors are :mod:`budeval.errors` exceptions that ``budeval.cli.main`` prints as
one line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from budeval import __version__
from budeval.config import Settings
from budeval.errors import NotFoundError, ValidationError
from budeval.logs import configure as configure_logs
from budeval.schemas.ids import check_dns_label
from budeval.schemas.results import ParsedRun
from budeval.storage.base import EvalStatus, EvaluationRecord, ScoreRow
from budeval.storage.clickhouse import ClickHouseStore, run_time
from budeval.storage.factory import open_archive, open_store
from budeval.storage.queries import ExampleRow


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("extract", help="parse a finished OpenCompass run, store its rows, archive its files")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the OpenCompass --work-dir (timestamp folders)")
    p.add_argument("--eval-id", required=True, help="evaluation id (DNS label)")
    p.add_argument("--run-id", default="r0", help="run id within the evaluation (default r0)")
    _store_arg(p)
    p.add_argument("--archive", metavar="URL", help="file:///path or s3://bucket?endpoint=... (BUDEVAL_ARCHIVE_URL)")
    p.add_argument("--no-archive", action="store_true", help="store rows only")
    _json_arg(p)
    p.set_defaults(func=cmd_extract)

    p = subparsers.add_parser("results", help="scores of one evaluation")
    p.add_argument("eval_id", metavar="ID")
    p.add_argument(
        "--examples",
        nargs="?",
        type=_non_negative,
        const=10,
        metavar="N",
        help="also the first N examples of each dataset (default 10): question, answer, gold, verdict",
    )
    _store_arg(p)
    _json_arg(p)
    p.set_defaults(func=cmd_results)

    p = subparsers.add_parser("leaderboard", help="models ranked on one dataset or a set of datasets")
    p.add_argument("--dataset", action="append", required=True, help="dataset name (repeat for a set)")
    p.add_argument("--metric", help="only this metric (default: every metric, ranked separately)")
    p.add_argument("--mode", choices=("latest", "best"), default="latest", help="per model and dataset")
    p.add_argument("--limit", type=_non_negative, default=20)
    p.add_argument("--offset", type=_non_negative, default=0)
    _store_arg(p)
    _json_arg(p)
    p.set_defaults(func=cmd_leaderboard)

    p = subparsers.add_parser("compare", help="score deltas of two evaluations (and per-example flips)")
    p.add_argument("eval_a", metavar="ID_A")
    p.add_argument("eval_b", metavar="ID_B")
    p.add_argument("--examples", action="store_true", help="also list examples that flipped correct <-> wrong")
    p.add_argument("--dataset", help="only flips of this dataset")
    p.add_argument("--limit", type=_non_negative, default=20, help="at most this many flipped examples")
    _store_arg(p)
    _json_arg(p)
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("migrate", help="apply pending store migrations (safe to repeat)")
    _store_arg(p)
    _json_arg(p)
    p.set_defaults(func=cmd_migrate)


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store", metavar="DSN", help="chdb:///path or http(s)://user:pass@host:port/db (BUDEVAL_STORE_DSN)"
    )


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON only")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {value}")
    return value


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[ClickHouseStore]:
    configure_logs()  # JSON lines on stderr: stdout carries only the command's output
    dsn = args.store or Settings.from_env().resolved_store_dsn()
    store = open_store(dsn)
    try:
        store.migrate()
        yield store
    finally:
        store.close()


def _emit_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def _fmt(score: float | None) -> str:
    return "-" if score is None else f"{score:.2f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n")
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _score_table(rows: Sequence[ScoreRow], out: TextIO) -> None:
    _table(
        ("model", "dataset", "metric", "score", "status", "reason"),
        [(r.model, r.dataset, r.metric or "-", _fmt(r.score), r.status, _cut(r.reason or "")) for r in rows],
        out,
    )


# -- extract ---------------------------------------------------------------------------------------------------------
def outcome(statuses: Sequence[str], scores: Sequence[float | None]) -> EvalStatus:
    """completed: every (model, dataset) ok; failed: none ok; partial: some."""
    if not statuses:
        return "completed" if any(s is not None for s in scores) else "failed"
    ok = sum(1 for s in statuses if s == "ok")
    if ok == len(statuses):
        return "completed"
    return "failed" if ok == 0 else "partial"


def _config_sha(run_dir: Path, parsed: ParsedRun) -> str | None:
    if not parsed.facts.config_file:
        return None
    path = run_dir / parsed.facts.config_file
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _parse(run_dir: Path) -> ParsedRun:
    from budeval.engine.results import parse_run  # the OpenCompass engine's reader

    parsed: ParsedRun = parse_run(run_dir)
    return parsed


def cmd_extract(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    eval_id = check_dns_label(args.eval_id, "eval_id")
    run_id = check_dns_label(args.run_id, "run_id")
    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        raise ValidationError(f"{run_dir} is not a directory", field="RUN_DIR")
    parsed = _parse(run_dir)
    facts = parsed.facts
    settings = Settings.from_env()
    with _store(args) as store:
        report = store.store_run(eval_id, run_id, parsed)
        statuses = store.statuses(eval_id)
        rows = store.results(eval_id)
        status = outcome([s.status for s in statuses], [r.score for r in rows])
        existing = store.get_evaluation(eval_id)
        record = existing.model_copy() if existing is not None else EvaluationRecord(eval_id=eval_id, status=status)
        record.status = status
        record.model_name = record.model_name or ",".join(facts.models)
        record.datasets = sorted(set(record.datasets) | set(facts.datasets))
        record.created_at = record.created_at or run_time(facts.timestamp)
        record.finished_at = datetime.now(UTC)
        this_run = {
            "run_id": run_id,
            "source": str(run_dir.resolve()),
            "timestamp": facts.timestamp,
            "summary_file": facts.summary_file,
            "summary_files": facts.summary_files,
            "notes": facts.notes,
            "judges": facts.judges,
            "config_file": facts.config_file,
            "config_sha256": _config_sha(run_dir, parsed),
            "opencompass_version": facts.opencompass_version,
            "models": facts.models,
            "datasets": facts.datasets,
            "metrics": report.metrics,
            "predictions": report.predictions,
        }
        # The same shape as the workflow's provenance: a list of runs, each with its run_id (older rows may hold a
        # dict keyed by run id); this run's entry replaces an earlier one.
        earlier = record.provenance.get("runs") or []
        if isinstance(earlier, dict):
            earlier = [{"run_id": key, **value} for key, value in earlier.items() if isinstance(value, dict)]
        runs = [r for r in earlier if isinstance(r, dict) and r.get("run_id") != run_id] + [this_run]
        versions = dict(record.provenance.get("dataset_versions") or {})
        versions.update({m.dataset: m.version for m in parsed.metrics if m.version and m.version != "-"})
        record.provenance = record.provenance | {
            "runs": runs,
            "dataset_versions": versions,
            "opencompass_version": facts.opencompass_version,
            "budeval_version": __version__,
            "extracted_by": "budeval extract",
        }
        store.record_evaluation(record)
        receipt = None
        if not args.no_archive:
            archive = open_archive(args.archive or settings.resolved_archive_url())
            receipt = archive.upload_run(
                run_dir, f"{eval_id}/{run_id}", {"eval_id": eval_id, **this_run}
            )
            record.archive_url = receipt.url
            store.record_evaluation(record)
    if args.json:
        _emit_json(
            {
                "eval_id": eval_id,
                "run_id": run_id,
                "status": status,
                "stored": report.model_dump(),
                "archive": receipt.model_dump() if receipt else None,
                "scores": [r.model_dump(mode="json") for r in rows],
            },
            out,
        )
        return 0
    _score_table(rows, out)
    out.write(f"\n{eval_id}/{run_id}: {status}; stored {report.metrics} scores, {report.predictions} predictions")
    if receipt is not None:
        out.write(f"; archived to {receipt.url} ({receipt.uploaded} uploaded, {receipt.skipped} unchanged)")
    out.write("\n")
    return 0


# -- queries ---------------------------------------------------------------------------------------------------------
def cmd_results(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Scores (a table, or a JSON list); with ``--examples N`` also per-example verdicts (JSON: an object
    ``{"scores": [...], "examples": [...]}``)."""
    out = out or sys.stdout
    with _store(args) as store:
        rows = store.results(args.eval_id)
        if not rows and store.get_evaluation(args.eval_id) is None:
            raise NotFoundError(f"no evaluation {args.eval_id!r} in the store")
        examples = store.examples(args.eval_id, args.examples) if args.examples is not None else None
    if args.json:
        scores = [r.model_dump(mode="json") for r in rows]
        if examples is None:
            _emit_json(scores, out)
        else:
            _emit_json({"scores": scores, "examples": [e.model_dump(mode="json") for e in examples]}, out)
        return 0
    _score_table(rows, out)
    if examples is not None:
        out.write(f"\nPer example (first {args.examples} of each dataset):\n")
        _example_table(examples, out)
    return 0


#: Width of the question and answer columns of the example table (longer texts are cut with "...").
EXAMPLE_TEXT_CHARS = 48
_VERDICT = {True: "right", False: "wrong", None: "-"}


def _cell(text: str, width: int = EXAMPLE_TEXT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _question(prompt: str) -> str:
    """The prompt as stored (``ROLE: text`` lines, see the result reader) without the first role's label."""
    head, sep, rest = prompt.partition(": ")
    return rest if sep and head.isupper() and head.isalpha() else prompt


def _example_table(rows: Sequence[ExampleRow], out: TextIO) -> None:
    many = len({r.model for r in rows}) > 1
    _table(
        (*(["model"] if many else []), "dataset", "#", "question", "answer", "gold", "verdict"),
        [
            (
                *([r.model] if many else []),
                r.dataset,
                str(r.example_index),
                _cell(_question(r.prompt)),
                _cell(r.prediction),
                _cell(r.gold, 24),
                _VERDICT[r.correct],
            )
            for r in rows
        ],
        out,
    )


def cmd_leaderboard(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    with _store(args) as store:
        rows = store.leaderboard(args.dataset, args.metric, args.mode, args.limit, args.offset)
    if args.json:
        _emit_json([r.model_dump(mode="json") for r in rows], out)
        return 0
    many = len(args.dataset) > 1
    headers = ["rank", "model", "metric", "score" if not many else "mean", "datasets"]
    if many:
        headers += args.dataset
    table = []
    for r in rows:
        line = [str(r.rank), r.model, r.metric, _fmt(r.score), f"{r.datasets}/{len(args.dataset)}"]
        if many:
            line += [_fmt(r.scores.get(d)) for d in args.dataset]
        table.append(line)
    _table(headers, table, out)
    return 0


def cmd_compare(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    with _store(args) as store:
        for eval_id in (args.eval_a, args.eval_b):
            if store.get_evaluation(eval_id) is None and not store.results(eval_id):
                raise NotFoundError(f"no evaluation {eval_id!r} in the store")
        rows = store.compare(args.eval_a, args.eval_b)
        summary = store.flip_summary(args.eval_a, args.eval_b) if args.examples else []
        flips = store.flips(args.eval_a, args.eval_b, args.dataset, args.limit) if args.examples else []
    if args.json:
        doc: dict[str, Any] = {"a": args.eval_a, "b": args.eval_b, "scores": [r.model_dump(mode="json") for r in rows]}
        if args.examples:
            doc["flip_summary"] = [r.model_dump(mode="json") for r in summary]
            doc["flips"] = [r.model_dump(mode="json") for r in flips]
        _emit_json(doc, out)
        return 0
    _table(
        ("model_a", "model_b", "dataset", "metric", "a", "b", "delta"),
        [
            (
                r.model_a or "-",
                r.model_b or "-",
                r.dataset,
                r.metric,
                _fmt(r.score_a),
                _fmt(r.score_b),
                "-" if r.delta is None else f"{r.delta:+.2f}",
            )
            for r in rows
        ],
        out,
    )
    if args.examples:
        out.write("\n")
        _table(
            ("model_a", "model_b", "dataset", "compared", "correct->wrong", "wrong->correct"),
            [
                (s.model_a, s.model_b, s.dataset, str(s.compared), str(s.correct_to_wrong), str(s.wrong_to_correct))
                for s in summary
            ],
            out,
        )
        out.write("\n")
        _table(
            ("dataset", "index", "replica", "flip", "gold", "prediction_a", "prediction_b"),
            [
                (
                    f.dataset,
                    str(f.example_index),
                    str(f.replica),
                    f.direction,
                    _cut(f.gold),
                    _cut(f.prediction_a),
                    _cut(f.prediction_b),
                )
                for f in flips
            ],
            out,
        )
    return 0


def _cut(text: str, width: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def cmd_migrate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    configure_logs()
    dsn = args.store or Settings.from_env().resolved_store_dsn()
    store = open_store(dsn)
    try:
        applied = store.migrate()
        version = store.schema_version()
    finally:
        store.close()
    if args.json:
        _emit_json({"applied": applied, "version": version}, out)
    elif applied:
        out.write(f"applied {', '.join(applied)}; schema version {version}\n")
    else:
        out.write(f"schema up to date (version {version})\n")
    return 0
