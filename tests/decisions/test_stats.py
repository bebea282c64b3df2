"""budeval.decisions.stats against reference implementations on fixed data (scipy.stats, statsmodels' published
values) and as properties (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from budeval.decisions import stats
from budeval.decisions.gate import GateOptions, PairedDataset, classify, paired_test
from budeval.errors import ValidationError


# -- McNemar ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("b,c", [(0, 0), (1, 9), (12, 2), (5, 5), (0, 7), (40, 61), (300, 251), (1000, 1100)])
def test_mcnemar_matches_scipy_binomtest(b: int, c: int) -> None:
    ours = stats.mcnemar_exact(b, c)
    ref = 1.0 if b + c == 0 else sps.binomtest(c, b + c, 0.5, alternative="two-sided").pvalue
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-15)


def test_mcnemar_known_values() -> None:
    # statsmodels.stats.contingency_tables.mcnemar(table, exact=True): exact fractions of 2 * P(X <= min).
    assert stats.mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert stats.mcnemar_exact(12, 2) == pytest.approx(212 / 16384)
    assert stats.mcnemar_exact(3, 3) == 1.0


def test_mcnemar_refuses_negative_counts() -> None:
    with pytest.raises(ValidationError):
        stats.mcnemar_exact(-1, 3)


# -- corrections -----------------------------------------------------------------------------------------------------
def test_holm_known_values() -> None:
    # statsmodels.stats.multitest.multipletests(p, method="holm")[1]
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize(
    "p",
    [
        [0.01, 0.04, 0.03, 0.005],
        [0.01, 0.02, 0.03, 0.04, 0.05],
        [0.2, 0.2, 0.001, 0.9, 0.049, 0.5],
        [1.0],
        [0.0, 0.0, 1.0],
    ],
)
def test_bh_matches_scipy_false_discovery_control(p: list[float]) -> None:
    assert stats.benjamini_hochberg(p) == pytest.approx(list(sps.false_discovery_control(p, method="bh")))


def test_adjust_selects_and_refuses() -> None:
    p = [0.01, 0.04]
    assert stats.adjust(p, "holm") == stats.holm(p)
    assert stats.adjust(p, "bh") == stats.benjamini_hochberg(p)
    assert stats.adjust(p, "none") == p
    with pytest.raises(ValidationError):
        stats.adjust(p, "bonferroni")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        stats.adjust([1.5], "holm")


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=30))
def test_adjusted_p_values_are_p_values_and_never_below_raw(p: list[float]) -> None:
    h, bh = stats.holm(p), stats.benjamini_hochberg(p)
    for raw, hv, bv in zip(p, h, bh, strict=True):
        assert 0.0 <= bv <= 1.0 and 0.0 <= hv <= 1.0
        assert hv >= raw - 1e-12 and bv >= raw - 1e-12
        assert hv >= bv - 1e-12  # Holm controls the FWER, so it is never less strict than BH


# -- intervals -------------------------------------------------------------------------------------------------------
def test_paired_proportion_ci_is_honest_without_discordant_pairs() -> None:
    low, high = stats.paired_proportion_ci(0, 0, 20)
    assert low < 0 < high and high - low > 0.1  # 20 identical examples cannot promise equality within 5 points
    low, high = stats.paired_proportion_ci(0, 0, 2000)
    assert -0.002 < low < 0 < high < 0.002


def test_paired_proportion_ci_known_value() -> None:
    # Agresti-Min by hand: b=10, c=30, n=200 -> cells 10.5, 30.5 of 202; centre 20/202.
    centre = 20 / 202
    var = (41 - 20**2 / 202) / 202**2
    half = 1.959963984540054 * math.sqrt(var)
    assert stats.paired_proportion_ci(10, 30, 200) == pytest.approx((centre - half, centre + half))


@given(st.integers(0, 500), st.integers(0, 500), st.integers(0, 500))
def test_paired_proportion_ci_contains_the_delta(b: int, c: int, concordant: int) -> None:
    n = b + c + concordant
    if n == 0:
        return
    low, high = stats.paired_proportion_ci(b, c, n)
    assert -1.0 <= low <= (c - b) / n <= high <= 1.0
    assert 0.0 <= stats.mcnemar_exact(b, c) <= 1.0


# -- bootstrap -------------------------------------------------------------------------------------------------------
def test_bootstrap_matches_scipy_percentile_bootstrap() -> None:
    rng = np.random.default_rng(7)
    diffs = np.round(rng.normal(-2.0, 10.0, size=400), 1)
    values, counts = np.unique(diffs, return_counts=True)
    ours = stats.paired_bootstrap(values.tolist(), counts.tolist(), iterations=20000, seed=1)
    ref = sps.bootstrap((diffs,), np.mean, n_resamples=20000, method="percentile", rng=np.random.default_rng(2))
    assert ours.delta == pytest.approx(float(diffs.mean()))
    se = float(diffs.std(ddof=1) / math.sqrt(len(diffs)))
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.1 * se)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.1 * se)
    assert ours.sd == pytest.approx(float(diffs.std(ddof=1)))
    # the p-value of a clearly non-zero mean (t ~ -4) is small; of a symmetric sample, large
    assert ours.p_value < 0.01
    flat = stats.paired_bootstrap([-1.0, 1.0], [200, 200], iterations=2000, seed=3)
    assert flat.p_value > 0.5


def test_bootstrap_is_seeded() -> None:
    a = stats.paired_bootstrap([0.0, 0.5, 1.0], [10, 3, 7], iterations=500, seed=42)
    b = stats.paired_bootstrap([0.0, 0.5, 1.0], [10, 3, 7], iterations=500, seed=42)
    c = stats.paired_bootstrap([0.0, 0.5, 1.0], [10, 3, 7], iterations=500, seed=43)
    assert (a == b and (a.low, a.high) != (c.low, c.high)) or a.p_value != c.p_value


def test_bootstrap_of_identical_runs_is_exactly_no_difference() -> None:
    r = stats.paired_bootstrap([0.0], [150], iterations=300, seed=0)
    assert (r.delta, r.low, r.high, r.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_bootstrap_refuses_bad_input() -> None:
    for values, counts in (([], []), ([1.0], [0]), ([1.0, 2.0], [1]), ([math.nan], [3]), ([1.0], [-1])):
        with pytest.raises(ValidationError):
            stats.paired_bootstrap(values, counts, iterations=10)
    with pytest.raises(ValidationError):
        stats.paired_bootstrap([1.0], [1], iterations=0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-100, 100, allow_nan=False), st.integers(1, 30)),
        min_size=1,
        max_size=12,
        unique_by=lambda t: t[0],
    ),
    st.integers(0, 2**32 - 1),
)
def test_bootstrap_properties(hist: list[tuple[float, int]], seed: int) -> None:
    values, counts = [v for v, _ in hist], [c for _, c in hist]
    r = stats.paired_bootstrap(values, counts, iterations=400, seed=seed)
    assert 0.0 < r.p_value <= 1.0
    assert r.low <= r.delta + 1e-9 and r.delta - 1e-9 <= r.high


# -- minimum detectable effect ---------------------------------------------------------------------------------------
def test_minimum_detectable_effect_formula() -> None:
    # (1.959964 + 0.841621) * 0.3 / sqrt(900) = 0.0280159
    assert stats.minimum_detectable_effect(0.3, 900) == pytest.approx(0.0280158, rel=1e-5)
    assert stats.minimum_detectable_effect(0.3, 3600) == pytest.approx(0.0280158 / 2, rel=1e-5)
    assert stats.minimum_detectable_effect(0.3, 0) == math.inf
    with pytest.raises(ValidationError):
        stats.minimum_detectable_effect(0.3, 10, alpha=1.5)


# -- the gate's verdicts as properties (pure: aggregates in memory, no store) -----------------------------------------
def _pairs(n: int, b: int, c: int) -> PairedDataset:
    return PairedDataset(model_baseline="m", model_candidate="m", dataset="d", paired=n, only_baseline=0,
                         only_candidate=0, single_verdicts=True, losses=b, gains=c)


@given(st.integers(1, 100_000), st.floats(0.0, 10.0), st.sampled_from(stats.CORRECTIONS))
def test_identical_runs_are_never_a_regression_or_an_improvement(n: int, tolerance: float, correction: str) -> None:
    options = GateOptions(tolerance=tolerance, correction=correction)  # type: ignore[arg-type]
    raw = paired_test(_pairs(n, 0, 0), options)
    assert raw["delta"] == 0.0 and raw["p_value"] == 1.0
    assert classify(raw["delta"], raw["ci_low"], raw["ci_high"], 1.0, options) in ("no-difference", "inconclusive")


@given(st.integers(0, 300), st.integers(0, 300), st.integers(0, 3000))
def test_mcnemar_test_properties(b: int, c: int, concordant: int) -> None:
    n = b + c + concordant
    if n == 0:
        return
    raw = paired_test(_pairs(n, b, c), GateOptions())
    assert 0.0 <= raw["p_value"] <= 1.0 and raw["mde"] > 0
    assert raw["ci_low"] <= raw["delta"] <= raw["ci_high"]
    if b == c:
        assert raw["p_value"] == 1.0


def test_mcnemar_many_is_mcnemar_per_pair() -> None:
    pairs = [(b, c) for b in (0, 1, 3, 20, 400, 5000) for c in (0, 2, 7, 390, 4900)]
    assert stats.mcnemar_exact_many(pairs) == [stats.mcnemar_exact(b, c) for b, c in pairs]
    assert stats.mcnemar_exact_many([]) == []
    with pytest.raises(ValidationError):
        stats.mcnemar_exact_many([(1, -1)])
