"""Context builders of the analysis pages: Compare (``budeval explain`` + ``budeval gate`` + flips) and Series
(``budeval series`` + the examples x checkpoints heatmap + one example across checkpoints)."""

from __future__ import annotations

from typing import Any, Literal

from budeval.decisions.gate import evaluate_gate
from budeval.decisions.series import build_series
from budeval.errors import BudevalError, GateRefusedError, NotFoundError
from budeval.storage.explain import explain
from budeval.storage.queries import FlipSummaryRow

FLIPS_PAGE = 25
MATRIX_PAGE = 40
Direction = Literal["correct_to_wrong", "wrong_to_correct"]


def compare_context(
    store: Any, a: str, b: str, *, dataset: str | None, direction: Direction | None, text: str | None,
    offset: int,
) -> dict[str, Any]:
    """A against B: the provenance diff and score deltas of ``explain``, the gate of B (candidate) against A
    (baseline) with each dataset's delta CI, the flip counts per dataset, and a page of flips filtered by dataset,
    direction and text. Raises NotFoundError for an unknown evaluation."""
    store = _EvaluationsOnce(store)
    rec_a, rec_b = store.get_evaluation(a), store.get_evaluation(b)
    for eval_id, rec in ((a, rec_a), (b, rec_b)):
        if rec is None:
            raise NotFoundError(f"no stored evaluation {eval_id!r}")
    doc = explain(rec_a, rec_b, store.compare(a, b))
    gate, gate_error = None, None
    try:
        gate = evaluate_gate(store, a, b)
    except (GateRefusedError, BudevalError) as exc:
        gate_error = exc.message
    by_dataset = {(v.dataset, v.model_candidate): v for v in gate.datasets} if gate else {}
    by_name = {v.dataset: v for v in gate.datasets} if gate else {}
    scores = []
    for row in doc["scores"]:
        verdict = by_dataset.get((row["dataset"], row["model_b"])) or by_name.get(row["dataset"])
        scores.append((row, verdict))
    flips = store.flips(a, b, dataset=dataset or None, limit=FLIPS_PAGE + 1, direction=direction, text=text or None,
                        offset=offset)
    more = len(flips) > FLIPS_PAGE
    summary = _summary(gate) or store.flip_summary(a, b)
    params = {"a": a, "b": b, "dataset": dataset, "direction": direction, "text": text}
    return {
        "a": a, "b": b, "record_a": rec_a, "record_b": rec_b, "explain": doc, "scores": scores, "gate": gate,
        "gate_error": gate_error, "summary": summary, "flips": flips[:FLIPS_PAGE], "dataset": dataset or "",
        "direction": direction or "", "text": text or "", "offset": offset,
        "next_offset": offset + FLIPS_PAGE if more else None,
        "prev_offset": max(0, offset - FLIPS_PAGE) if offset else None, "params": params,
        "flip_datasets": sorted({s.dataset for s in summary}),
    }


class _EvaluationsOnce:
    """The store for one page: each evaluation row read once (the page and the gate both ask for A and B)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._rows: dict[str, Any] = {}

    def get_evaluation(self, eval_id: str) -> Any:
        if eval_id not in self._rows:
            self._rows[eval_id] = self._store.get_evaluation(eval_id)
        return self._rows[eval_id]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _summary(gate: Any) -> list[FlipSummaryRow] | None:
    """The flip counts per dataset from the gate's McNemar counts (losses: right -> wrong, gains: wrong -> right),
    when every dataset was one verdict per example on each side; else None (the store counts them)."""
    if gate is None or any(v.losses is None or v.gains is None for v in gate.datasets):
        return None
    return [FlipSummaryRow(model_a=v.model_baseline, model_b=v.model_candidate, dataset=v.dataset,
                           compared=v.examples, correct_to_wrong=v.losses or 0, wrong_to_correct=v.gains or 0)
            for v in gate.datasets]


def _curve(ds: Any) -> dict[str, Any]:
    xs = [p.step if p.step is not None else p.position for p in ds.points]
    return {
        "dataset": ds.dataset,
        "x": xs,
        "score": [round(p.score, 4) for p in ds.points],
        "low": [round(p.ci_low, 4) for p in ds.points],
        "high": [round(p.ci_high, 4) for p in ds.points],
        "step_axis": all(p.step is not None for p in ds.points),
    }


def series_context(store: Any, series: str, *, dataset: str | None, offset: int) -> dict[str, Any]:
    """The series report (learning curves with CI bands, kinds and lists of examples), a page of its examples x
    checkpoints heatmap. Raises NotFoundError for an unknown series."""
    report = build_series(store, series, dataset=dataset or None, limit=10)
    matrix, total = store.series_matrix(report.checkpoints, dataset or None, limit=MATRIX_PAGE, offset=offset)
    return {
        "series": series,
        "report": report,
        "curves": [_curve(ds) for ds in report.datasets],
        "dataset": dataset or "",
        "datasets": [ds.dataset for ds in report.datasets],
        "matrix": matrix,
        "total": total,
        "offset": offset,
        "next_offset": offset + MATRIX_PAGE if offset + MATRIX_PAGE < total else None,
        "prev_offset": max(0, offset - MATRIX_PAGE) if offset else None,
        "params": {"dataset": dataset},
    }


def series_example_context(store: Any, series: str, dataset: str, index: int) -> dict[str, Any]:
    """One example across the series' checkpoints: each checkpoint's predictions and verdicts, in training order."""
    checkpoints = store.series_checkpoints(series)
    if not checkpoints:
        raise NotFoundError(f"no finished evaluation in series {series!r}")
    rows = store.example_history([c.eval_id for c in checkpoints], dataset, index)
    by_eval: dict[str, list[Any]] = {}
    for row in rows:
        by_eval.setdefault(row.eval_id, []).append(row)
    first = rows[0] if rows else None
    return {
        "series": series,
        "dataset": dataset,
        "index": index,
        "prompt": first.prompt if first else "",
        "gold": first.gold if first else "",
        "steps": [(c, by_eval.get(c.eval_id, [])) for c in checkpoints],
    }
