"""The regression gate: is a candidate evaluation better or worse than a baseline on the same examples, or is the
difference noise? Per dataset a paired test (McNemar's exact test for single verdicts, a seeded cluster bootstrap
otherwise), the delta with its CI, a corrected p-value and the minimum detectable effect; then a verdict per dataset
and overall (docs/decisions.md defines each and the exit codes of ``budeval gate``).

The per-example pairing and aggregation happen in ClickHouse (``budeval/storage/decision_queries.py``); this module
only reads the aggregates through :class:`PairSource`.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from budeval.decisions import stats
from budeval.errors import GateRefusedError, NotFoundError, ValidationError
from budeval.schemas.request import GateAlpha, GateIterations, GateSeed, GateTolerance

Verdict = Literal["regression", "improvement", "no-difference", "inconclusive"]
Method = Literal["mcnemar", "bootstrap"]

#: ``budeval gate`` exit codes per overall verdict (3: refused, not found or any other error).
EXIT_CODES: dict[Verdict, int] = {"no-difference": 0, "improvement": 0, "regression": 1, "inconclusive": 2}
EXIT_ERROR = 3
#: The statuses of an evaluation the gate compares (the baseline rules pick among the same in SQL).
FINISHED = ("completed", "partial", "reused")


class GateOptions(BaseModel):
    """Thresholds of the gate; defaults in docs/decisions.md. ``tolerance`` is in points of the stored scale
    (verdicts: percentage points of accuracy; numeric per-example scores: their own unit)."""

    model_config = ConfigDict(extra="forbid")

    tolerance: GateTolerance = 1.0
    alpha: GateAlpha = 0.05
    correction: stats.Correction = "holm"
    seed: GateSeed = 0
    iterations: GateIterations = 2000
    power: float = Field(default=stats.DEFAULT_POWER, gt=0.0, lt=1.0)


class PairedDataset(BaseModel):
    """What the store aggregates per (model pairing, dataset) from both evaluations' predictions.

    Each side's value of an example is its verdict as 0 or 100 (``correct``), else its numeric ``score``; with
    replicas the mean over them. ``single_verdicts``: every paired example is one verdict on each side (McNemar
    applies). ``losses`` / ``gains``: paired examples right in the baseline and wrong in the candidate / the other way
    round (single verdicts only). ``diff_values`` / ``diff_counts``: the histogram of per-example differences
    (candidate - baseline), one count per paired example.
    """

    model_baseline: str
    model_candidate: str
    dataset: str
    paired: int
    only_baseline: int
    only_candidate: int
    single_verdicts: bool
    losses: int = 0
    gains: int = 0
    mean_baseline: float = 0.0
    mean_candidate: float = 0.0
    diff_values: list[float] = Field(default_factory=list)
    diff_counts: list[int] = Field(default_factory=list)
    #: 100 for verdicts, else the observed range of the paired values (the bootstrap's small-sample floor).
    value_range: float = 100.0
    #: Paired examples with a verdict on one side and only a numeric score on the other, or scored only numerically
    #: in a dataset whose other examples have verdicts (units differ: refused).
    mixed: int = 0


class PairSource(Protocol):
    """The store's side of the gate (implemented by ``ClickHouseStore``)."""

    def get_evaluation(self, eval_id: str) -> Any: ...

    def paired_examples(self, baseline: str, candidate: str) -> list[PairedDataset]: ...

    def resolve_baseline(self, rule: str, value: str, exclude: str) -> str | None: ...


class DatasetVerdict(BaseModel):
    """One dataset's test: delta = candidate - baseline (points), its CI, raw and corrected p, MDE and verdict."""

    dataset: str
    model_baseline: str
    model_candidate: str
    examples: int
    method: Method
    score_baseline: float
    score_candidate: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    mde: float
    losses: int | None = None
    gains: int | None = None
    verdict: Verdict


class GateReport(BaseModel):
    """The whole gate: resolved ids, options, per-dataset verdicts, the overall verdict and its exit code."""

    baseline: str
    baseline_rule: str | None = None
    candidate: str
    options: GateOptions
    datasets: list[DatasetVerdict]
    verdict: Verdict
    passed: bool
    exit_code: int


def classify(delta: float, low: float, high: float, p_adjusted: float, options: GateOptions) -> Verdict:
    """``regression``: corrected p < alpha and delta < -tolerance; ``improvement``: corrected p < alpha and
    delta > +tolerance; ``no-difference``: the CI lies inside [-tolerance, +tolerance]; else ``inconclusive``."""
    significant = p_adjusted < options.alpha
    if significant and delta < -options.tolerance:
        return "regression"
    if significant and delta > options.tolerance:
        return "improvement"
    if -options.tolerance <= low and high <= options.tolerance:
        return "no-difference"
    return "inconclusive"


def overall(verdicts: list[Verdict]) -> Verdict:
    """Any regression; else any inconclusive; else any improvement; else no-difference."""
    for v in ("regression", "inconclusive", "improvement"):
        if v in verdicts:
            return v  # type: ignore[return-value]
    return "no-difference"


def paired_test(pairs: PairedDataset, options: GateOptions) -> dict[str, Any]:
    """The raw (uncorrected) test of one dataset: method, delta, CI, p-value and MDE, in points."""
    n = pairs.paired
    confidence = 1.0 - options.alpha
    if pairs.single_verdicts:
        low, high = stats.paired_proportion_ci(pairs.losses, pairs.gains, n, confidence)
        sd = stats.paired_sd(pairs.losses, pairs.gains, n)
        return {
            "method": "mcnemar",
            "delta": 100.0 * (pairs.gains - pairs.losses) / n,
            "ci_low": 100.0 * low,
            "ci_high": 100.0 * high,
            "p_value": stats.mcnemar_exact(pairs.losses, pairs.gains),
            "mde": 100.0 * stats.minimum_detectable_effect(sd, n, options.alpha, options.power),
            "losses": pairs.losses,
            "gains": pairs.gains,
        }
    boot = stats.paired_bootstrap(
        pairs.diff_values, pairs.diff_counts, iterations=options.iterations, seed=options.seed, confidence=confidence
    )
    # Small-sample floor: a bootstrap of differences that are all equal has a zero-width CI whatever n is. The CI is
    # at least as wide as Agresti-Min's with no discordant pair, scaled to the values' range (docs/decisions.md).
    # Values that are all equal have no observed range: the floor then uses the verdicts' scale (100 points).
    scale = pairs.value_range if pairs.value_range > 0 else 100.0
    floor = stats.normal_quantile(0.5 + confidence / 2) * scale / (n + 2)
    floor_sd = scale / math.sqrt(n + 2)
    # The bootstrap's p-value is far too small on few examples (one example that lost both replicas never resamples
    # to 0: p = 1 / (iterations + 1)). It is at least the paired sign-flip test's, valid at any n (docs/decisions.md).
    flip = stats.sign_flip_p_value(pairs.diff_values, pairs.diff_counts, iterations=options.iterations,
                                   seed=options.seed)
    return {
        "method": "bootstrap",
        "delta": boot.delta,
        # within what a difference can be: the values' range either way (the floor alone can pass it on few examples)
        "ci_low": max(-scale, min(boot.low, boot.delta - floor)),
        "ci_high": min(scale, max(boot.high, boot.delta + floor)),
        "p_value": max(boot.p_value, flip),
        "mde": stats.minimum_detectable_effect(max(boot.sd, floor_sd), n, options.alpha, options.power),
    }


def parse_baseline(text: str) -> tuple[str, str] | None:
    """``best:<experiment>`` or ``latest:<label>=<value>`` as (rule, value); None for a plain eval id. Raises
    ValidationError for an unknown rule or an empty value."""
    if ":" not in text:
        return None
    rule, _, value = text.partition(":")
    if rule not in ("best", "latest") or not value or (rule == "latest" and "=" not in value):
        raise ValidationError(
            f"a baseline is an eval id, best:<experiment> or latest:<label>=<value>, not {text!r}", field="baseline"
        )
    return rule, value


def evaluate_gate(source: PairSource, baseline: str, candidate: str, options: GateOptions | None = None) -> GateReport:
    """Run the gate of ``candidate`` against ``baseline`` (an eval id or a rule, see :func:`parse_baseline`).

    Raises NotFoundError (an evaluation or rule that matches nothing), GateRefusedError (an evaluation not finished,
    no paired example, or the example sets differ: the error carries the overlap counts per dataset) and
    ValidationError (bad options, a baseline that is the candidate).
    """
    options = options or GateOptions()
    rule = parse_baseline(baseline)
    baseline_id = baseline
    if rule is not None:
        found = source.resolve_baseline(rule[0], rule[1], exclude=candidate)
        if found is None:
            raise NotFoundError(f"no evaluation matches the baseline rule {baseline!r}")
        baseline_id = found
    if baseline_id == candidate:
        raise ValidationError(f"the baseline of {candidate!r} is the evaluation itself", field="baseline")
    for eval_id in (baseline_id, candidate):
        evaluation = source.get_evaluation(eval_id)
        if evaluation is None:
            raise NotFoundError(f"no evaluation {eval_id!r} in the store")
        if evaluation.status not in FINISHED:
            raise GateRefusedError(
                f"evaluation {eval_id!r} is {evaluation.status}, not finished ({', '.join(FINISHED)}): its rows may be "
                "partial", overlap=[],
            )
    pairs = source.paired_examples(baseline_id, candidate)
    overlap = [
        {
            "dataset": p.dataset,
            "paired": p.paired,
            "only_baseline": p.only_baseline,
            "only_candidate": p.only_candidate,
        }
        for p in pairs
    ]
    if not any(p.paired for p in pairs):
        raise GateRefusedError(
            f"{baseline_id} and {candidate} share no example with a verdict or score", overlap=overlap
        )
    differ = [o for o in overlap if o["only_baseline"] or o["only_candidate"]]
    if differ:
        listed = "; ".join(
            f"{o['dataset']}: {o['paired']} paired, {o['only_baseline']} only in the baseline, "
            f"{o['only_candidate']} only in the candidate"
            for o in differ
        )
        raise GateRefusedError(f"the example sets differ (another dataset version?): {listed}", overlap=overlap)
    mixed = [p for p in pairs if p.mixed]
    if mixed:
        listed = "; ".join(f"{p.dataset}: {p.mixed} of {p.paired}" for p in mixed)
        raise GateRefusedError(
            f"examples judged by a verdict (0 or 100) where others are only scored numerically -- on the other side "
            f"or on the dataset's other examples (different units): {listed}", overlap=overlap,
        )
    raw = [paired_test(p, options) for p in pairs]
    adjusted = stats.adjust([r["p_value"] for r in raw], options.correction)
    rows: list[DatasetVerdict] = []
    for p, r, p_adj in zip(pairs, raw, adjusted, strict=True):
        rows.append(
            DatasetVerdict(
                dataset=p.dataset,
                model_baseline=p.model_baseline,
                model_candidate=p.model_candidate,
                examples=p.paired,
                score_baseline=p.mean_baseline,
                score_candidate=p.mean_candidate,
                p_adjusted=p_adj,
                verdict=classify(r["delta"], r["ci_low"], r["ci_high"], p_adj, options),
                **r,
            )
        )
    verdict = overall([r.verdict for r in rows])
    return GateReport(
        baseline=baseline_id,
        baseline_rule=baseline if rule is not None else None,
        candidate=candidate,
        options=options,
        datasets=rows,
        verdict=verdict,
        passed=EXIT_CODES[verdict] == 0,
        exit_code=EXIT_CODES[verdict],
    )
