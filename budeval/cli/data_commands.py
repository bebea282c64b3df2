"""The query subcommands of the store: results, leaderboard, compare, and migrate (prepare the store).

Defaults come from ``Settings.from_env()`` (``BUDEVAL_STORE_DSN``). With ``--json`` the JSON document is the only
thing on stdout; errors are :mod:`budeval.errors` exceptions that ``budeval.cli.main`` prints as one line. ``budeval
extract`` lives in :mod:`budeval.cli.extract_command`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from budeval.cli.common import (
    cut,
    emit_json,
    fmt,
    json_arg,
    non_negative,
    score_table,
    store_arg,
    table,
    writing_store,
)
from budeval.cli.reading import reading_store, verbose_arg
from budeval.config import Settings
from budeval.errors import NotFoundError
from budeval.schemas.results import RunUsage
from budeval.storage.base import EvaluationRecord, ScoreRow
from budeval.storage.queries import ExampleRow


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("results", help="scores of one evaluation")
    p.add_argument("eval_id", metavar="ID")
    p.add_argument(
        "--examples",
        nargs="?",
        type=non_negative,
        const=10,
        metavar="N",
        help="also the first N examples of each dataset (default 10): question, answer, gold, verdict",
    )
    store_arg(p)
    json_arg(p)
    verbose_arg(p)
    p.set_defaults(func=cmd_results)

    p = subparsers.add_parser("leaderboard", help="models ranked on one dataset or a set of datasets")
    p.add_argument("--dataset", action="append", required=True, help="dataset name (repeat for a set)")
    p.add_argument("--metric", help="only this metric (default: every metric, ranked separately)")
    p.add_argument("--mode", choices=("latest", "best"), default="latest", help="per model and dataset")
    p.add_argument("--limit", type=non_negative, default=20)
    p.add_argument("--offset", type=non_negative, default=0)
    store_arg(p)
    json_arg(p)
    verbose_arg(p)
    p.set_defaults(func=cmd_leaderboard)

    p = subparsers.add_parser("compare", help="score deltas of two evaluations (and per-example flips)")
    p.add_argument("eval_a", metavar="ID_A")
    p.add_argument("eval_b", metavar="ID_B")
    p.add_argument("--examples", action="store_true", help="also list examples that flipped correct <-> wrong")
    p.add_argument("--dataset", help="only flips of this dataset")
    p.add_argument("--limit", type=non_negative, default=20, help="at most this many flipped examples")
    store_arg(p)
    json_arg(p)
    verbose_arg(p)
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("migrate", help="apply pending store migrations (safe to repeat)")
    store_arg(p)
    json_arg(p)
    p.set_defaults(func=cmd_migrate)


# -- queries ---------------------------------------------------------------------------------------------------------
def cmd_results(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Scores (a table, or a JSON list); with ``--examples N`` also per-example verdicts (JSON: an object
    ``{"scores": [...], "examples": [...]}``). An evaluation without any score (failed, cancelled, still running)
    exits 1 with its status and reason on stderr (the rows it has, if any, are printed first)."""
    out = out or sys.stdout
    with reading_store(args) as store:
        rows = store.results(args.eval_id)
        record = store.get_evaluation(args.eval_id)
        if not rows and record is None:
            raise NotFoundError(f"no evaluation {args.eval_id!r} in the store")
        examples = store.examples(args.eval_id, args.examples) if args.examples is not None else None
        usage = RunUsage.total(list(store.usage(args.eval_id).values()))
    if args.json:
        scores = [r.model_dump(mode="json") for r in rows]
        if examples is None:
            emit_json(scores, out)
        else:
            emit_json({"scores": scores, "examples": [e.model_dump(mode="json") for e in examples]}, out)
    else:
        if rows:
            score_table(rows, out)
        if usage is not None:
            out.write(usage.line() + "\n")
        if examples is not None and rows:
            out.write(f"\nPer example (first {args.examples} of each dataset):\n")
            _example_table(examples, out)
    why = no_scores_reason(args.eval_id, record, rows)
    if why is not None:
        print(f"budeval: error: {why}", file=sys.stderr)
        return 1
    return 0


def no_scores_reason(eval_id: str, record: EvaluationRecord | None, rows: Sequence[ScoreRow]) -> str | None:
    """Why ``eval_id`` has no score (its status and reason), or None when at least one row has a score."""
    if any(r.score is not None for r in rows):
        return None
    status = record.status if record is not None else "unknown"
    reason = (record.reason if record is not None else None) or next((r.reason for r in rows if r.reason), None)
    return f"{eval_id} has no scores: it is {status}" + (f" ({reason})" if reason else "")


#: Width of the question and answer columns of the example table (longer texts are cut with "...").
EXAMPLE_TEXT_CHARS = 48
_VERDICT = {True: "right", False: "wrong", None: "-"}


def _question(prompt: str) -> str:
    """The prompt as stored (``ROLE: text`` lines, see the result reader) without the first role's label."""
    head, sep, rest = prompt.partition(": ")
    return rest if sep and head.isupper() and head.isalpha() else prompt


def _example_table(rows: Sequence[ExampleRow], out: TextIO) -> None:
    many = len({r.model for r in rows}) > 1
    judged = any(r.judge_answer for r in rows)  # a judge's raw answer beside its verdict
    table(
        (*(["model"] if many else []), "dataset", "#", "question", "answer", "gold", "verdict",
         *(["judge said"] if judged else [])),
        [
            (
                *([r.model] if many else []),
                r.dataset,
                str(r.example_index),
                cut(_question(r.prompt), EXAMPLE_TEXT_CHARS),
                cut(r.prediction, EXAMPLE_TEXT_CHARS),
                cut(r.gold, 24),
                _VERDICT[r.correct],
                *([cut(" ".join(r.judge_answer.split()), 32)] if judged else []),
            )
            for r in rows
        ],
        out,
    )


def cmd_leaderboard(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    rows: list[Any] = []
    if args.limit > 0:  # (the API's pages hold at least one row)
        with reading_store(args) as store:
            rows = store.leaderboard(args.dataset, args.metric, args.mode, args.limit, args.offset)
    if args.json:
        emit_json([r.model_dump(mode="json") for r in rows], out)
        return 0
    many = len(args.dataset) > 1
    headers = ["rank", "model", "metric", "score" if not many else "mean", "datasets"]
    if many:
        headers += args.dataset
    lines = []
    for r in rows:
        line = [str(r.rank), r.model, r.metric, fmt(r.score), f"{r.datasets}/{len(args.dataset)}"]
        if many:
            line += [fmt(r.scores.get(d)) for d in args.dataset]
        lines.append(line)
    table(headers, lines, out)
    return 0


def cmd_compare(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    with reading_store(args) as store:
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
        emit_json(doc, out)
        return 0
    table(
        ("model_a", "model_b", "dataset", "metric", "a", "b", "delta"),
        [
            (
                r.model_a or "-",
                r.model_b or "-",
                r.dataset,
                r.metric,
                fmt(r.score_a),
                fmt(r.score_b),
                "-" if r.delta is None else f"{r.delta:+.2f}",
            )
            for r in rows
        ],
        out,
    )
    if args.examples:
        out.write("\n")
        table(
            ("model_a", "model_b", "dataset", "compared", "correct->wrong", "wrong->correct"),
            [
                (s.model_a, s.model_b, s.dataset, str(s.compared), str(s.correct_to_wrong), str(s.wrong_to_correct))
                for s in summary
            ],
            out,
        )
        out.write("\n")
        table(
            ("dataset", "index", "replica", "flip", "gold", "prediction_a", "prediction_b"),
            [
                (
                    f.dataset,
                    str(f.example_index),
                    str(f.replica),
                    f.direction,
                    cut(f.gold),
                    cut(f.prediction_a),
                    cut(f.prediction_b),
                )
                for f in flips
            ],
            out,
        )
    return 0


def cmd_migrate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    ttl_s = Settings.from_env().predictions_ttl_s
    with writing_store(args, migrate=False) as store:
        applied = store.migrate()
        version = store.schema_version()
        ttl, refilled = store.apply_predictions_ttl(ttl_s)  # the setting, not a numbered migration: clickhouse_ttl.py
        # rows changed outside the store: docs/decisions.md "Example sets" (a removal just reconciled them: one pass)
        if ttl != "removed":
            refilled = store.reconcile_example_sets()
    if args.json:
        emit_json({"applied": applied, "version": version, "predictions_ttl_s": ttl_s, "predictions_ttl": ttl,
                   "example_sets_refilled": refilled}, out)
        return 0
    if applied:
        out.write(f"applied {', '.join(applied)}; schema version {version}\n")
    else:
        out.write(f"schema up to date (version {version})\n")
    if ttl != "unchanged":
        shown = {"set": f"set to {ttl_s} s after stored_at", "removed": "removed (predictions_ttl_s is 0)",
                 "kept foreign": "a TTL budeval did not set is left as it is (predictions_ttl_s is 0)"}[ttl]
        out.write(f"predictions TTL {shown}\n")
    if refilled:
        out.write(f"example sets refilled from the rows of {len(refilled)} evaluation(s): {', '.join(refilled[:10])}\n")
    return 0
