"""The decision subcommands: ``gate`` (is a candidate better or worse than a baseline, or is it noise?) and ``series``
(learning curves and per-example evolution over the checkpoints of one experiment). docs/decisions.md.

``budeval gate`` exits 0 when the gate passes (no-difference or improvement), 1 on a regression, 2 when inconclusive
and 3 on a refusal (different example sets, nothing to pair), an unknown evaluation, a store error or a malformed
command line; the reason is one ``budeval: error: ...`` line on stderr (with ``--json``, also a JSON document on
stdout).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn, TextIO

from pydantic import ValidationError as PydanticValidationError

from budeval.cli.common import emit_json, store_arg, table
from budeval.cli.reading import reading_store, verbose_arg
from budeval.cli.remote_store import ServiceStore
from budeval.decisions.gate import EXIT_ERROR, GateOptions, GateReport, evaluate_gate
from budeval.decisions.series import MAX_LISTED, SeriesReport, build_series
from budeval.decisions.stats import CORRECTIONS
from budeval.errors import BudevalError, GateRefusedError, ValidationError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "gate",
        help="paired test of a candidate against a baseline: exit 0 pass, 1 regression, 2 inconclusive, 3 error",
        description="Per dataset: McNemar's exact test (one verdict per example) or a seeded cluster bootstrap "
        "(replicas, numeric scores), the delta candidate - baseline with its CI, the corrected p-value and the "
        "minimum detectable effect; a verdict per dataset and overall (docs/decisions.md).",
    )
    p.add_argument("baseline", metavar="BASELINE", help="eval id, best:<experiment> or latest:<label>=<value>")
    p.add_argument("candidate", metavar="CANDIDATE", help="eval id")
    p.add_argument("--tolerance", type=float, default=1.0, help="points a change must exceed to count (default 1)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after correction (default 0.05)")
    p.add_argument("--correction", choices=CORRECTIONS, default="holm", help="across datasets (default holm)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--iterations", type=int, default=2000, help="bootstrap resamples (default 2000)")
    store_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON only")
    verbose_arg(p)
    p.set_defaults(func=cmd_gate, error_exit=EXIT_ERROR)  # main(): a bad setting exits 3 too
    _exit_3_on_usage_errors(p)

    p = subparsers.add_parser(
        "series",
        help="learning curves and per-example evolution over a training run's checkpoints",
        description="The finished evaluations of one series (their request's checkpoint.series; evaluations without "
        "a checkpoint block: their experiment_id) in step order (checkpoint.step; else the 'step' label): per dataset "
        "the score per checkpoint with its CI, examples learned / forgotten since the previous checkpoint, the paired "
        "test of each checkpoint against the first, and the easy, hard, forgotten and late-learned examples.",
    )
    p.add_argument("series", metavar="SERIES",
                   help="the checkpoints' checkpoint.series (or, without a checkpoint block, their experiment_id)")
    p.add_argument("--dataset", help="only this dataset")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after correction (default 0.05)")
    p.add_argument("--correction", choices=CORRECTIONS, default="holm", help="across checkpoints (default holm)")
    p.add_argument("--examples", type=int, default=10, metavar="N", help="listed per kind (0-1000, default 10)")
    store_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON only")
    verbose_arg(p)
    p.set_defaults(func=cmd_series)


def _exit_3_on_usage_errors(parser: argparse.ArgumentParser) -> None:
    # argparse exits 2 on a bad command line, which for the gate means "inconclusive": a CI job must not read a typo
    # as a result. The gate's parser exits 3 instead (an instance attribute shadows the method).
    def error(message: str) -> NoReturn:
        parser.print_usage(sys.stderr)
        print(f"budeval: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)

    setattr(parser, "error", error)  # noqa: B010


def _points(value: float) -> str:
    return f"{value:+.2f}"


def _p(value: float) -> str:
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def print_gate(report: GateReport, out: TextIO) -> None:
    """The human-readable form of a gate report (a table per dataset, then the overall line)."""
    label = f"{report.baseline} ({report.baseline_rule})" if report.baseline_rule else report.baseline
    o = report.options
    out.write(
        f"gate {label} -> {report.candidate}: tolerance {o.tolerance:g} pt, alpha {o.alpha:g}, "
        f"{o.correction} correction\n"
    )
    # Several models on each side (paired model by model): a dataset appears once per model.
    many = len({r.dataset for r in report.datasets}) < len(report.datasets)
    table(
        (*(["model"] if many else []), "dataset", "n", "method", "baseline", "candidate", "delta",
         f"{100 * (1 - o.alpha):g}% CI", "p", f"p ({o.correction})", "mde", "verdict"),
        [
            (
                *([r.model_baseline] if many else []),
                r.dataset,
                str(r.examples),
                r.method + (f" {r.losses}-/{r.gains}+" if r.losses is not None else ""),
                f"{r.score_baseline:.2f}",
                f"{r.score_candidate:.2f}",
                _points(r.delta),
                f"[{_points(r.ci_low)}, {_points(r.ci_high)}]",
                _p(r.p_value),
                _p(r.p_adjusted),
                f"{r.mde:.2f}",
                r.verdict,
            )
            for r in report.datasets
        ],
        out,
    )
    out.write(f"{report.verdict}: {'passed' if report.passed else 'failed'} (exit {report.exit_code})\n")


def cmd_gate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        options = GateOptions(
            tolerance=args.tolerance, alpha=args.alpha, correction=args.correction, seed=args.seed,
            iterations=args.iterations,
        )
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = f"--{where}: {first['msg']}"
        print(f"budeval: error: {message}", file=sys.stderr)
        if args.json:  # CI reads the document: an error is one too (as below)
            emit_json({"verdict": "error", "error": "invalid_request", "message": message, "exit_code": EXIT_ERROR},
                      out)
        return EXIT_ERROR
    try:
        with reading_store(args) as store:
            if isinstance(store, ServiceStore):  # the service holds the store: it computes the same report
                report = store.gate(args.baseline, args.candidate, options)
            else:
                report = evaluate_gate(store, args.baseline, args.candidate, options)
    except Exception as exc:  # any failure exits 3: a traceback's exit 1 would read as "regression"
        if isinstance(exc, BudevalError):
            reason, message, line = exc.reason, exc.message, str(exc)
        else:
            reason, message = "internal", f"{type(exc).__name__}: {exc}"
            line = message
        print(f"budeval: error: {line}", file=sys.stderr)
        if args.json:
            doc: dict[str, Any] = {"verdict": "error", "error": reason, "message": message, "exit_code": EXIT_ERROR}
            if isinstance(exc, GateRefusedError):
                doc["overlap"] = exc.overlap
            emit_json(doc, out)
        return EXIT_ERROR
    if args.json:
        emit_json(report.model_dump(mode="json"), out)
    else:
        print_gate(report, out)
    return report.exit_code


def _step(point_step: int | None, position: int) -> str:
    return str(point_step) if point_step is not None else f"#{position}"


def print_series(report: SeriesReport, out: TextIO) -> None:
    """The human-readable form of a series report: per dataset the curve, the kinds and the listed examples."""
    out.write(f"series {report.series}: {len(report.checkpoints)} checkpoints\n")
    for ds in report.datasets:
        out.write(f"\n{ds.dataset}\n")
        table(
            ("step", "eval", "n", "score", f"{100 * (1 - report.alpha):g}% CI", "learned", "forgotten",
             "vs first", f"p ({report.correction})"),
            [
                (
                    _step(p.step, p.position),
                    p.eval_id,
                    str(p.examples),
                    f"{p.score:.2f}",
                    f"[{p.ci_low:.2f}, {p.ci_high:.2f}]",
                    str(p.learned) if p.position else "-",
                    str(p.forgotten) if p.position else "-",
                    "-" if p.delta_vs_first is None else f"{p.delta_vs_first:+.2f}",
                    "-" if p.p_adjusted is None else (_p(p.p_adjusted) + (" *" if p.significant else "")),
                )
                for p in ds.points
            ],
            out,
        )
        kinds = ", ".join(f"{n} {k}" for k, n in ds.kinds.items())
        out.write(f"examples: {kinds}; {ds.flips} flips\n")
        first = ds.first_significant_gain
        out.write(
            "first significant gain over the first checkpoint: "
            + (f"step {_step(first.step, first.position)} ({first.eval_id})" if first else "none")
            + "\n"
        )
        if ds.best is not None:
            b = ds.best
            out.write(f"best: step {_step(b.step, b.position)} ({b.eval_id}) {b.score:.2f}\n")
        for kind, items in ds.examples.items():
            if items:
                listed = "; ".join(
                    f"#{e.example_index}"
                    + (f" (from {e.first_right_eval_id})" if kind == "learned" else "")
                    + f" {_short(e.prompt)}"
                    for e in items
                )
                out.write(f"  {kind}: {listed}\n")


def _short(prompt: str, width: int = 40) -> str:
    head, sep, rest = prompt.partition(": ")
    text = " ".join((rest if sep and head.isupper() else prompt).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def cmd_series(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if not 0 < args.alpha < 1:
        raise ValidationError(f"must lie strictly between 0 and 1, not {args.alpha}", field="--alpha")
    if not 0 <= args.examples <= MAX_LISTED:
        raise ValidationError(f"must be 0..{MAX_LISTED}, not {args.examples}", field="--examples")
    with reading_store(args) as store:
        if isinstance(store, ServiceStore):
            report = store.series(args.series, args.dataset, args.alpha, args.correction, args.examples)
        else:
            report = build_series(
                store, args.series, dataset=args.dataset, alpha=args.alpha, correction=args.correction,
                limit=args.examples,
            )
    if args.json:
        emit_json(report.model_dump(mode="json"), out)
    else:
        print_series(report, out)
    return 0
