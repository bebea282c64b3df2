"""The regression gate on the real chDB store: rows written through the store's write API (real OpenCompass output
through the real reader; planted runs of known size), paired and aggregated by the gate's SQL, judged in Python."""

from __future__ import annotations

import pytest

from budeval.decisions.gate import GateOptions, classify, evaluate_gate, overall
from budeval.errors import GateRefusedError, NotFoundError, ValidationError
from budeval.storage.clickhouse import ClickHouseStore

from .support import OPENCOMPASS, REALWORLD, PlantedRun, planted, record, record_fixture, verdicts


def _two(store: ClickHouseStore, base: dict[str, list[bool]], cand: dict[str, list[bool]]) -> None:
    record(store, "base", PlantedRun([r for d, f in base.items() for r in verdicts(d, f)]), order=0)
    record(store, "cand", PlantedRun([r for d, f in cand.items() for r in verdicts(d, f)]), order=1)


def test_identical_runs_are_no_difference(store: ClickHouseStore) -> None:
    base, _ = planted(2000, 1600)
    _two(store, {"qa": base, "mcq": base[:1500]}, {"qa": base, "mcq": base[:1500]})
    report = evaluate_gate(store, "base", "cand")
    assert report.verdict == "no-difference" and report.passed and report.exit_code == 0
    for row in report.datasets:
        assert row.method == "mcnemar" and row.losses == 0 and row.gains == 0
        assert row.delta == 0.0 and row.p_value == 1.0 and row.p_adjusted == 1.0
        assert -1.0 < row.ci_low < 0 < row.ci_high < 1.0
    assert {r.dataset: r.examples for r in report.datasets} == {"mcq": 1500, "qa": 2000}
    scores = {r.dataset: (r.score_baseline, r.score_candidate) for r in report.datasets}
    assert scores == {"qa": (pytest.approx(80.0), pytest.approx(80.0)), "mcq": (100.0, 100.0)}


def test_planted_regression_of_known_size_on_2000_examples(store: ClickHouseStore) -> None:
    base, cand = planted(2000, 1600, losses=100, gains=20)  # true delta -4 points
    same, _ = planted(2000, 1200)
    _two(store, {"qa": base, "mcq": same}, {"qa": cand, "mcq": same})
    report = evaluate_gate(store, "base", "cand", GateOptions(tolerance=1.0))
    rows = {r.dataset: r for r in report.datasets}
    qa = rows["qa"]
    assert (qa.losses, qa.gains, qa.examples) == (100, 20, 2000)
    assert qa.delta == pytest.approx(-4.0) and qa.ci_low < -4.0 < qa.ci_high < -1.0
    assert qa.score_baseline == pytest.approx(80.0) and qa.score_candidate == pytest.approx(76.0)
    assert qa.p_value < 1e-10 and qa.p_adjusted == pytest.approx(min(1.0, 2 * qa.p_value))  # Holm over 2 datasets
    assert qa.verdict == "regression" and rows["mcq"].verdict == "no-difference"
    assert 0.5 < qa.mde < 2.0  # points: what 2,000 pairs with ~6% discordance can detect
    assert report.verdict == "regression" and report.exit_code == 1 and not report.passed


def test_the_same_drop_within_the_tolerance_is_not_a_regression(store: ClickHouseStore) -> None:
    base, cand = planted(2000, 1600, losses=100, gains=20)
    _two(store, {"qa": base}, {"qa": cand})
    report = evaluate_gate(store, "base", "cand", GateOptions(tolerance=6.0))
    assert report.verdict == "no-difference"  # CI [-5.1, -2.9] lies inside +-6 points
    report = evaluate_gate(store, "base", "cand", GateOptions(tolerance=4.5))
    assert report.verdict == "inconclusive"  # significant, but not beyond 4.5 and not inside the band


def test_planted_improvement(store: ClickHouseStore) -> None:
    base, cand = planted(2000, 1000, losses=10, gains=150)
    _two(store, {"qa": base}, {"qa": cand})
    report = evaluate_gate(store, "base", "cand", GateOptions(correction="bh"))
    assert report.verdict == "improvement" and report.exit_code == 0 and report.datasets[0].delta == pytest.approx(7.0)


def test_twenty_examples_are_inconclusive(store: ClickHouseStore) -> None:
    base, cand = planted(20, 14, losses=3, gains=1)
    _two(store, {"qa": base}, {"qa": cand})
    report = evaluate_gate(store, "base", "cand")
    row = report.datasets[0]
    assert row.delta == pytest.approx(-10.0) and row.p_value > 0.05 and row.mde > 10
    assert report.verdict == "inconclusive" and report.exit_code == 2


def test_identical_twenty_examples_are_inconclusive_not_proven_equal(store: ClickHouseStore) -> None:
    base, _ = planted(20, 14)
    _two(store, {"qa": base}, {"qa": base})
    assert evaluate_gate(store, "base", "cand").verdict == "inconclusive"


def test_different_example_sets_are_refused_with_the_overlap(store: ClickHouseStore) -> None:
    base, _ = planted(300, 200)
    _two(store, {"qa": base, "mcq": base[:50]}, {"qa": base[:280], "other": base[:10]})
    with pytest.raises(GateRefusedError) as caught:
        evaluate_gate(store, "base", "cand")
    overlap = {o["dataset"]: o for o in caught.value.overlap}
    assert overlap["qa"] == {"dataset": "qa", "paired": 280, "only_baseline": 20, "only_candidate": 0}
    assert overlap["mcq"]["only_baseline"] == 50 and overlap["other"]["only_candidate"] == 10
    assert "qa: 280 paired, 20 only in the baseline" in caught.value.message


def test_no_shared_verdict_is_refused_and_unknown_ids_are_not_found(store: ClickHouseStore) -> None:
    record_fixture(store, "qa-a", OPENCOMPASS / "qa_chat")  # real output whose evaluator gave no verdicts
    record_fixture(store, "qa-b", OPENCOMPASS / "qa_chat")
    with pytest.raises(GateRefusedError, match="share no example"):
        evaluate_gate(store, "qa-a", "qa-b")
    with pytest.raises(NotFoundError):
        evaluate_gate(store, "qa-a", "nope")


def test_real_output_extracted_twice_is_paired_by_mcnemar(store: ClickHouseStore) -> None:
    record_fixture(store, "mcq-a", OPENCOMPASS / "mcq")
    record_fixture(store, "mcq-b", OPENCOMPASS / "mcq")
    report = evaluate_gate(store, "mcq-a", "mcq-b")
    [row] = report.datasets
    assert (row.dataset, row.examples, row.method, row.losses, row.gains) == ("tiny_mcq", 4, "mcnemar", 0, 0)
    assert row.score_baseline == pytest.approx(25.0) and row.delta == 0.0
    assert report.verdict == "inconclusive"  # 4 examples cannot show equality within a point


def test_real_replicas_use_the_cluster_bootstrap(store: ClickHouseStore) -> None:
    record_fixture(store, "greedy", REALWORLD / "n-replicas" / "run")
    record_fixture(store, "sampled", REALWORLD / "n-replicas" / "run_sampled")
    options = GateOptions(seed=7, iterations=1000)
    report = evaluate_gate(store, "greedy", "sampled", options)
    [row] = report.datasets
    # 4 examples x 2 replicas: example 0 goes from 0/2 to 1/2 right (+50 points), the rest are unchanged
    assert (row.method, row.examples) == ("bootstrap", 4)
    assert row.delta == pytest.approx(12.5) and row.score_baseline == pytest.approx(25.0)
    # the resampled CI [0, 37.5] widened to the small-sample floor: +-z * 100 / (n + 2) around the delta
    floor = 1.959963984540054 * 100 / 6
    assert row.ci_low == pytest.approx(12.5 - floor) and row.ci_high == pytest.approx(12.5 + floor)
    assert report.verdict == "inconclusive"
    assert evaluate_gate(store, "greedy", "sampled", options) == report  # seeded


def test_real_numeric_scores_use_the_bootstrap(store: ClickHouseStore) -> None:
    record_fixture(store, "needle-a", REALWORLD / "numeric-per-example-score" / "run")
    record_fixture(store, "needle-b", REALWORLD / "numeric-per-example-score" / "run")
    [row] = evaluate_gate(store, "needle-a", "needle-b").datasets
    assert (row.method, row.examples, row.delta, row.p_value) == ("bootstrap", 5, 0.0, 1.0)
    assert row.score_baseline == pytest.approx((100 + 100 + 1.4634146341463408 + 100 + 2.608695652173914) / 5)


def test_numeric_scores_planted_shift(store: ClickHouseStore) -> None:
    rows_a = [("needle", i, 0, None, float(i % 50)) for i in range(1000)]
    rows_b = [("needle", i, 0, None, float(i % 50) - 3.0) for i in range(1000)]
    record(store, "base", PlantedRun(rows_a))
    record(store, "cand", PlantedRun(rows_b), order=1)
    [row] = evaluate_gate(store, "base", "cand", GateOptions(tolerance=1.0, iterations=500)).datasets
    floor = 1.959963984540054 * 52 / 1002  # values range over [-3, 49]
    assert row.delta == pytest.approx(-3.0) and row.ci_low == pytest.approx(-3.0 - floor)
    assert row.verdict == "regression"


@pytest.mark.parametrize(("n", "verdict"), [(20, "inconclusive"), (2000, "no-difference")])
def test_identical_replicas_need_enough_examples_to_be_no_difference(
    store: ClickHouseStore, n: int, verdict: str
) -> None:
    rows = [("qa", i, r, (i + r) % 3 == 0, None) for i in range(n) for r in range(2)]
    record(store, "base", PlantedRun(rows))
    record(store, "cand", PlantedRun(rows), order=1)
    [row] = evaluate_gate(store, "base", "cand").datasets
    assert (row.method, row.delta, row.p_value) == ("bootstrap", 0.0, 1.0)
    assert row.ci_low < 0 < row.ci_high and row.verdict == verdict


def test_baseline_rules(store: ClickHouseStore) -> None:
    base, cand = planted(200, 120, losses=5)
    worse, _ = planted(200, 60)
    record(store, "ck-1", PlantedRun(verdicts("qa", worse)), experiment="exp", labels={"tier": "prod"}, order=0)
    record(store, "ck-2", PlantedRun(verdicts("qa", base)), experiment="exp", labels={"tier": "prod"}, order=1)
    record(store, "ck-3", PlantedRun(verdicts("qa", cand)), experiment="exp", labels={"tier": "dev"}, order=2)
    assert evaluate_gate(store, "best:exp", "ck-3").baseline == "ck-2"
    report = evaluate_gate(store, "latest:tier=prod", "ck-3")
    assert report.baseline == "ck-2" and report.baseline_rule == "latest:tier=prod"
    assert evaluate_gate(store, "best:exp", "ck-2").baseline == "ck-3"  # never the candidate itself
    with pytest.raises(NotFoundError):
        evaluate_gate(store, "latest:tier=none", "ck-3")
    for bad in ("worst:exp", "latest:tier", "best:"):
        with pytest.raises(ValidationError):
            evaluate_gate(store, bad, "ck-3")


def test_verdict_rules() -> None:
    o = GateOptions(tolerance=1.0, alpha=0.05)
    assert classify(-2.0, -3.0, -1.0, 0.01, o) == "regression"
    assert classify(-2.0, -3.0, -1.0, 0.06, o) == "inconclusive"
    assert classify(2.0, 1.5, 2.5, 0.001, o) == "improvement"
    assert classify(0.1, -0.5, 0.8, 0.5, o) == "no-difference"
    assert classify(-0.8, -0.9, -0.7, 0.001, o) == "no-difference"  # significant but inside the tolerance band
    assert overall(["no-difference", "improvement"]) == "improvement"
    assert overall(["improvement", "inconclusive"]) == "inconclusive"
    assert overall(["inconclusive", "regression"]) == "regression"
    assert overall([]) == "no-difference"
