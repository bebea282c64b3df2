"""Decisions benchmark: the regression gate over 1,000,000 paired examples and a checkpoint series of 50 checkpoints
x 10,000 examples, on the real store (embedded chDB), against a floor measured on the same rows in the same run.

    .venv/bin/python scripts/bench_gate.py [--examples 1000000 --datasets 10] [--checkpoints 50 --per-checkpoint 10000]
        [--repeat 5] [--store chdb:///path] [--rows]

1. Fills an empty store with SQL (``INSERT ... SELECT FROM numbers(n)``: the benchmark measures the reads, not the
   write path): a baseline and a candidate of ``--examples`` predictions over ``--datasets`` datasets (about 70% right,
   the candidate with about 5% of the verdicts flipped), and a checkpoint series of ``--checkpoints`` evaluations of
   ``--per-checkpoint`` predictions each over two datasets (accuracy rising with the step). The inserts fill the
   example sets too (migration 7's materialized view), as a run's store does.
2. gate: ``evaluate_gate(store, baseline, candidate)`` (pairing and aggregation in ClickHouse, McNemar in Python).
   series: ``build_series(store, series)`` (curves, transitions, kinds, listed examples with prompts). Both read the
   example sets here (one verdict per example); ``--rows`` makes them read the prediction rows instead (the way
   before migration 7, for comparison).
3. Floor: one ``count()`` over the same rows, read the way the decisions read them (``predictions FINAL``, the same
   eval ids, rows with a verdict).
Each figure is the best of ``--repeat`` runs (the machine is shared and noisy: the ratio is the figure to compare).
   A second, informative floor: one GROUP BY of the same rows by example (what any per-example pairing must do).
Last line: ``gate_s=<float> series_s=<float> ratio_to_floor=<float> ratio_to_groupby=<float>`` (the larger of the
gate's and the series' ratios each).
Targets (issue 16): gate < 1 s, series < 2 s, within 5x the floor.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from budeval.decisions.gate import GateOptions, evaluate_gate
from budeval.decisions.series import build_series
from budeval.storage.base import EvaluationRecord
from budeval.storage.factory import open_store

FLOOR_SQL = "SELECT count() FROM predictions FINAL WHERE eval_id IN %(ids)s AND correct IS NOT NULL"
#: A second, informative floor: one aggregation of the same rows by example (what any per-example pairing must do).
GROUPBY_SQL = """
    SELECT count() FROM (SELECT dataset, example_index, avg(assumeNotNull(correct)) FROM predictions FINAL
                         WHERE eval_id IN %(ids)s AND correct IS NOT NULL GROUP BY dataset, example_index)
"""


def _insert_predictions(store: Any, eval_id: str, n: int, datasets: int, correct_sql: str) -> None:
    """``n`` predictions of one evaluation; ``correct_sql`` may use ``i`` (the row number) and ``idx``."""
    store._command(
        "bench fill",
        f"""
        INSERT INTO predictions (eval_id, run_id, model, dataset, example_index, prompt, prediction, gold, correct,
                                 replica, score)
        SELECT %(e)s, 'r0', 'model-' || %(e)s, 'dataset_' || toString(modulo(i, {datasets})) AS ds,
               toUInt32(intDiv(i, {datasets})) AS idx,
               concat('USER: question ', toString(idx), ' of ', ds), 'answer', 'gold', {correct_sql}, 0, NULL
        FROM (SELECT number AS i FROM numbers({n}))
        """,
        {"e": eval_id},
    )


def fill(store: Any, examples: int, datasets: int, checkpoints: int, per_checkpoint: int) -> None:
    base = "modulo(cityHash64(idx, ds), 100) < 70"
    flipped = f"if(modulo(cityHash64(idx, ds, 1), 100) < 5, NOT ({base}), {base})"
    _insert_predictions(store, "bench-base", examples, datasets, base)
    _insert_predictions(store, "bench-cand", examples, datasets, flipped)
    for eval_id in ("bench-base", "bench-cand"):
        store.record_evaluation(EvaluationRecord(eval_id=eval_id, status="completed"))
    for k in range(checkpoints):
        eval_id = f"bench-ck-{k:03d}"
        # accuracy rising from ~30% to ~80% over the checkpoints, with some forgetting
        threshold = 30 + 50 * k // max(checkpoints - 1, 1)
        _insert_predictions(
            store, eval_id, per_checkpoint, 2,
            f"(modulo(cityHash64(idx, ds), 100) < {threshold}) != (modulo(cityHash64(idx, ds, {k}), 100) < 3)",
        )
        store.record_evaluation(
            EvaluationRecord(eval_id=eval_id, status="completed", checkpoint_series="bench-run",
                             checkpoint_step=1000 * (k + 1))
        )


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=1_000_000)
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--checkpoints", type=int, default=50)
    parser.add_argument("--per-checkpoint", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--store", help="a DSN (default: a fresh chDB folder in a temporary directory)")
    parser.add_argument("--rows", action="store_true", help="decide from the prediction rows, not the example sets")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp:
        store = open_store(args.store or f"chdb://{tmp}/ch")
        try:
            store.migrate()
            store.decisions_from_sets = not args.rows
            start = time.perf_counter()
            fill(store, args.examples, args.datasets, args.checkpoints, args.per_checkpoint)
            print(f"filled in {time.perf_counter() - start:.1f}s", file=sys.stderr)
            options = GateOptions()
            gate_s, report = best_of(args.repeat, lambda: evaluate_gate(store, "bench-base", "bench-cand", options))
            gate_floor, rows = best_of(
                args.repeat, lambda: store._rows("floor", FLOOR_SQL, {"ids": ["bench-base", "bench-cand"]})
            )
            assert rows[0][0] == 2 * args.examples, rows
            gate_groupby, _ = best_of(
                args.repeat, lambda: store._rows("floor", GROUPBY_SQL, {"ids": ["bench-base", "bench-cand"]})
            )
            ck_ids = [f"bench-ck-{k:03d}" for k in range(args.checkpoints)]
            series_s, series = best_of(args.repeat, lambda: build_series(store, "bench-run"))
            series_floor, rows = best_of(args.repeat, lambda: store._rows("floor", FLOOR_SQL, {"ids": ck_ids}))
            assert rows[0][0] == args.checkpoints * args.per_checkpoint, rows
            series_groupby, _ = best_of(args.repeat, lambda: store._rows("floor", GROUPBY_SQL, {"ids": ck_ids}))
        finally:
            store.close()
    paired = sum(d.examples for d in report.datasets)
    print(
        f"gate: {paired} paired examples, {len(report.datasets)} datasets, verdict {report.verdict} "
        f"({gate_s:.3f}s; count floor {gate_floor:.3f}s, group-by {gate_groupby:.3f}s); series: "
        f"{len(series.checkpoints)} checkpoints x {args.per_checkpoint} ({series_s:.3f}s; count floor "
        f"{series_floor:.3f}s, group-by {series_groupby:.3f}s)",
        file=sys.stderr,
    )
    ratio = max(gate_s / gate_floor, series_s / series_floor)
    to_groupby = max(gate_s / gate_groupby, series_s / series_groupby)
    print(f"gate_s={gate_s:.3f} series_s={series_s:.3f} ratio_to_floor={ratio:.2f} ratio_to_groupby={to_groupby:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
