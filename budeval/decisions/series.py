"""Checkpoint series: what a training run learns. The evaluations of one series (the request's ``checkpoint`` block;
before it, an ``experiment_id``) in training order (the checkpoint's step; before it, the ``step`` label), per
dataset a learning curve with CIs, transitions between consecutive checkpoints, each checkpoint's paired test against
the first (McNemar, corrected across the checkpoints), and the examples that are easy, hard, learned late or
forgotten. The store aggregates per example in SQL (storage/decision_queries.py); this module turns the aggregates
into a report (docs/decisions.md).
"""

from __future__ import annotations

import math
import re
from typing import Literal, NamedTuple, Protocol

from pydantic import BaseModel, Field

from budeval.decisions import stats
from budeval.errors import NotFoundError, ValidationError
from budeval.schemas.request import ALPHA_MIN, SERIES_NAME_PATTERN

#: The most examples a series lists per kind and dataset (CLI ``--examples``, API ``examples``): a report, not an export
#: (the examples' page of the web UI and ``budeval examples`` page through all of them).
MAX_LISTED = 1000

Kind = Literal["easy", "hard", "learned", "forgotten", "unstable"]
KINDS: tuple[Kind, ...] = ("easy", "hard", "learned", "forgotten", "unstable")


class Checkpoint(BaseModel):
    """One evaluation of the series: its position (0-based, training order), its training step (the request's
    ``checkpoint.step``, else its ``step`` label; None if neither) and ``checkpoint.tokens_seen`` (None if not
    given)."""

    position: int
    eval_id: str
    step: int | None = None
    tokens_seen: int | None = None


class PointRow(BaseModel):
    """The store's aggregate of one (dataset, checkpoint position); verdicts as fractions (0-1)."""

    dataset: str
    position: int
    examples: int
    mean: float
    var: float
    replicas: int
    with_previous: int
    learned: int
    forgotten: int
    losses_vs_first: int
    gains_vs_first: int


class KindRow(BaseModel):
    """How many examples of a dataset are of a kind over the series."""

    dataset: str
    kind: Kind
    examples: int


class ListedExample(BaseModel):
    """An example named in a list (hard, easy, learned, forgotten) with its prompt and gold."""

    dataset: str
    example_index: int
    kind: Kind
    first_right_position: int | None = None  # the checkpoint where it was first right; None when never
    first_right_eval_id: str | None = None
    prompt: str = ""
    gold: str = ""


class SeriesRows(NamedTuple):
    """What the store aggregates for a series: per (dataset, checkpoint) the curve's aggregates, per (dataset, kind)
    the examples, the first ``limit`` examples of each kind but unstable, and per dataset its flips (changes of an
    example's verdict between its consecutive judgments, over all its examples). All empty when the series has no
    per-example verdicts."""

    points: list[PointRow]
    kinds: list[KindRow]
    listed: list[ListedExample]
    flips: dict[str, int]


class SeriesSource(Protocol):
    """The store's side of the series (implemented by ``ClickHouseStore``)."""

    def series_checkpoints(self, series: str) -> list[Checkpoint]: ...

    def series_rows(self, checkpoints: list[Checkpoint], dataset: str | None, limit: int) -> SeriesRows:
        """The :class:`SeriesRows` of these checkpoints (``dataset``: only that one)."""
        ...


class SeriesPoint(BaseModel):
    """One checkpoint on one dataset: score (points) with its CI, transitions from the previous checkpoint, and the
    paired test against the first checkpoint (None on the first)."""

    position: int
    step: int | None
    eval_id: str
    examples: int
    score: float
    ci_low: float
    ci_high: float
    learned: int
    forgotten: int
    delta_vs_first: float | None = None
    p_vs_first: float | None = None
    p_adjusted: float | None = None
    significant: bool = False


class DatasetSeries(BaseModel):
    dataset: str
    points: list[SeriesPoint]
    kinds: dict[str, int]  # kind -> examples
    flips: int
    first_significant_gain: SeriesPoint | None = None
    best: SeriesPoint | None = None
    examples: dict[str, list[ListedExample]] = Field(default_factory=dict)


class SeriesReport(BaseModel):
    series: str
    checkpoints: list[Checkpoint]
    alpha: float
    correction: stats.Correction
    datasets: list[DatasetSeries]


def score_ci(mean: float, var: float, n: int, replicas: int, confidence: float) -> tuple[float, float]:
    """CI of a checkpoint's score (fractions): Wilson's score interval when every example is one verdict, else the
    normal interval of the mean of per-example means (a cluster-robust SE: examples are the independent units),
    widened to at least Wilson's interval over the ``n`` examples (per-example means that are all equal, e.g. every
    replica right, have variance 0 and would give a zero-width interval)."""
    if n <= 0:
        return 0.0, 1.0
    z = stats.normal_quantile(0.5 + confidence / 2)
    centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(max(mean * (1 - mean), 0.0) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    if replicas <= 1:
        return low, high
    se = math.sqrt(max(var, 0.0) / n) if var == var else 0.0
    return max(0.0, min(low, mean - z * se)), min(1.0, max(high, mean + z * se))


def build_series(
    source: SeriesSource,
    series: str,
    *,
    dataset: str | None = None,
    alpha: float = 0.05,
    correction: stats.Correction = "holm",
    limit: int = 10,
) -> SeriesReport:
    """The series report of series ``series`` (a ``checkpoint.series``, or for evaluations without a checkpoint block
    an ``experiment_id``). Raises NotFoundError when it has no finished evaluation, or none with per-example verdicts
    (for ``dataset`` when given); ValidationError when ``limit`` (examples listed per kind) is not 0..MAX_LISTED,
    ``alpha`` is not in [1e-6, 1) or ``series`` is not a series name (``SeriesName``: an empty one would match every
    evaluation without a series)."""
    if not re.fullmatch(SERIES_NAME_PATTERN, series):
        raise ValidationError(f"not a series or experiment name: {series!r}", field="series")
    if not 0 <= limit <= MAX_LISTED:
        raise ValidationError(f"must be 0..{MAX_LISTED}, not {limit}", field="examples")
    if not ALPHA_MIN <= alpha < 1:  # also NaN; the gate's bounds (GateAlpha)
        raise ValidationError(f"must be {ALPHA_MIN:g} <= alpha < 1, not {alpha}", field="alpha")
    checkpoints = source.series_checkpoints(series)
    if not checkpoints:
        raise NotFoundError(f"no finished evaluation in series {series!r} (checkpoint.series or experiment_id)")
    by_position = {c.position: c for c in checkpoints}
    points, kinds, listed, flips_of = source.series_rows(checkpoints, dataset, limit)
    if not points:
        what = f" on dataset {dataset!r}" if dataset else ""
        raise NotFoundError(f"series {series!r} has no per-example verdicts{what}")
    out: list[DatasetSeries] = []
    for name in sorted({p.dataset for p in points}):
        rows = [p for p in points if p.dataset == name]
        first = rows[0]
        built: list[SeriesPoint] = []
        p_vs_first = stats.mcnemar_exact_many([(r.losses_vs_first, r.gains_vs_first) for r in rows[1:]])
        for row in rows:
            cp = by_position[row.position]
            low, high = score_ci(row.mean, row.var, row.examples, row.replicas, 1 - alpha)
            point = SeriesPoint(
                position=row.position, step=cp.step, eval_id=cp.eval_id, examples=row.examples,
                score=100 * row.mean, ci_low=100 * low, ci_high=100 * high,
                learned=row.learned, forgotten=row.forgotten,
            )
            if row is not first:
                paired = row.examples
                point.delta_vs_first = 100 * (row.gains_vs_first - row.losses_vs_first) / max(paired, 1)
                point.p_vs_first = p_vs_first[len(built) - 1]
            built.append(point)
        later = [p for p in built if p.p_vs_first is not None]
        for point, p_adj in zip(later, stats.adjust([p.p_vs_first or 0.0 for p in later], correction), strict=True):
            point.p_adjusted = p_adj
            point.significant = p_adj < alpha
        gains = [p for p in later if p.significant and (p.delta_vs_first or 0.0) > 0]
        best = max(built, key=lambda p: (p.score, -p.position))
        counts = {k: 0 for k in KINDS}
        for k in kinds:
            if k.dataset == name:
                counts[k.kind] = k.examples
        lists: dict[str, list[ListedExample]] = {"hard": [], "easy": [], "forgotten": [], "learned": []}
        for ex in listed:
            if ex.dataset == name and ex.kind in lists:
                lists[ex.kind].append(ex)
        out.append(
            DatasetSeries(
                dataset=name, points=built, kinds=dict(counts), flips=flips_of.get(name, 0),
                first_significant_gain=gains[0] if gains else None, best=best, examples=lists,
            )
        )
    return SeriesReport(series=series, checkpoints=checkpoints, alpha=alpha, correction=correction, datasets=out)
