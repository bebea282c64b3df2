"""Regression tests of defects found by breaking issue #16's gate and series (real chDB store, rows written through the
store's write API as in the other decision tests). Each test names what used to go wrong."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from scipy import stats as ss

from budeval.cli.main import main
from budeval.decisions.gate import evaluate_gate
from budeval.decisions.series import build_series
from budeval.errors import GateRefusedError, ValidationError
from budeval.storage.base import EvaluationRecord
from budeval.storage.clickhouse import ClickHouseStore

from .support import PlantedRun, record, verdicts


def test_one_example_with_replicas_is_not_a_significant_regression(store: ClickHouseStore) -> None:
    # One example, two replicas, right -> wrong: the bootstrap's resampled means never reach 0, so its p-value was
    # 1 / (iterations + 1) and the gate said "regression" (exit 1) on a single example.
    record(store, "a", PlantedRun([("q", 0, r, True, None) for r in range(2)]))
    record(store, "b", PlantedRun([("q", 0, r, False, None) for r in range(2)]), order=1)
    [row] = evaluate_gate(store, "a", "b").datasets
    assert row.method == "bootstrap" and row.p_value == 1.0 and row.verdict == "inconclusive"


def test_few_examples_with_replicas_match_mcnemar(store: ClickHouseStore) -> None:
    # Five examples lost with two identical replicas each: the same evidence as five single verdicts lost, where
    # McNemar gives p = 2 / 2^5. The bootstrap's p must not be smaller (it was 1 / 2001).
    record(store, "a", PlantedRun([("q", i, r, True, None) for i in range(5) for r in range(2)]))
    record(store, "b", PlantedRun([("q", i, r, False, None) for i in range(5) for r in range(2)]), order=1)
    [row] = evaluate_gate(store, "a", "b").datasets
    exact = ss.binomtest(0, 5, 0.5).pvalue  # 0.0625; the sign-flip test draws it (Monte Carlo, 2,000 draws)
    assert row.p_value == pytest.approx(exact, abs=0.02) and row.verdict == "inconclusive"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> int:
    try:
        code = main([*argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    capsys.readouterr()
    return code


def test_cli_misspelt_option_and_bad_settings_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # argparse's top-level parser reported unknown options with exit 2 ("inconclusive") and main() mapped a bad
    # --set to exit 1 ("regression"): a CI job read a typo as a result.
    dsn = f"chdb://{tmp_path / 'other'}"
    assert _cli(capsys, "gate", "a", "b", "--tolerence", "2", "--store", dsn) == 3
    assert _cli(capsys, "--bogus", "gate", "a", "b", "--store", dsn) == 3
    assert _cli(capsys, "--set", "bogus=1", "gate", "a", "b", "--store", dsn) == 3
    assert _cli(capsys, "--set", "store_dsn", "gate", "a", "b") == 3
    # other commands keep their codes: 2 for a usage error
    assert _cli(capsys, "results", "x", "--bogus") == 2


def test_cli_unexpected_error_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A store path that cannot be created raised FileNotFoundError out of the command: a traceback and exit 1.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = _cli(capsys, "gate", "a", "b", "--store", f"chdb://{blocker / 'ch'}")
    assert code == 3


def test_gate_against_itself_is_a_usage_error(store: ClickHouseStore) -> None:
    # An explicit baseline equal to the candidate passed as "no-difference" (a rule never picks the candidate).
    record(store, "a", PlantedRun(verdicts("q", [True] * 3000)))
    with pytest.raises(ValidationError, match="itself"):
        evaluate_gate(store, "a", "a")


@pytest.mark.parametrize("status", ["running", "failed", "cancelled", "pending"])
def test_unfinished_or_failed_evaluations_are_refused(store: ClickHouseStore, status: str) -> None:
    # A running or failed evaluation was gated like a finished one (its rows may be partial or wrong).
    record(store, "done", PlantedRun(verdicts("q", [False] * 500)))
    store.store_run("other", "r0", PlantedRun(verdicts("q", [True] * 500)))
    store.record_evaluation(EvaluationRecord(eval_id="other", status=status))  # type: ignore[arg-type]
    for baseline, candidate in (("done", "other"), ("other", "done")):
        with pytest.raises(GateRefusedError, match=status):
            evaluate_gate(store, baseline, candidate)


def test_latest_rule_with_an_empty_value_needs_the_label(store: ClickHouseStore) -> None:
    # labels['tier'] is '' for an evaluation without the label: latest:tier= picked any unlabelled evaluation.
    record(store, "cand", PlantedRun(verdicts("q", [True] * 10)))
    record(store, "unlabelled", PlantedRun(verdicts("q", [True] * 10)), order=1)
    record(store, "empty", PlantedRun(verdicts("q", [True] * 10)), labels={"tier": ""}, order=0)
    assert evaluate_gate(store, "latest:tier=", "cand").baseline == "empty"
    assert store.resolve_baseline("latest", "absent=", exclude="cand") is None


def test_verdicts_against_numeric_scores_are_refused(store: ClickHouseStore) -> None:
    # A verdict (0 / 100) on one side and a numeric score (here 0-1) on the other were subtracted: "regression".
    record(store, "a", PlantedRun([("q", i, 0, True, None) for i in range(100)]))
    record(store, "b", PlantedRun([("q", i, 0, None, 1.0) for i in range(100)]), order=1)
    with pytest.raises(GateRefusedError, match="verdict"):
        evaluate_gate(store, "a", "b")


def test_identical_numeric_scores_on_four_examples_are_not_proven_equal(store: ClickHouseStore) -> None:
    # All values equal: the observed range is 0, so the small-sample floor vanished and 4 examples gave a CI of
    # [0, 0], "no-difference" (the floor exists to prevent exactly that).
    rows = [("needle", i, 0, None, 1.0) for i in range(4)]
    record(store, "a", PlantedRun(rows))
    record(store, "b", PlantedRun(rows), order=1)
    [row] = evaluate_gate(store, "a", "b").datasets
    assert row.ci_low < -1.0 and row.ci_high > 1.0 and row.verdict == "inconclusive"


def test_nan_scores_are_not_compared(store: ClickHouseStore) -> None:
    # A NaN per-example score (written by a client other than the parser) made the histogram non-finite: an error
    # naming no dataset. Like a row with no score, it is not compared.
    record(store, "a", PlantedRun([("needle", i, 0, None, math.nan if i == 0 else 50.0) for i in range(50)]))
    record(store, "b", PlantedRun([("needle", i, 0, None, math.nan if i == 0 else 50.0) for i in range(50)]), order=1)
    [row] = evaluate_gate(store, "a", "b").datasets
    assert row.examples == 49 and row.delta == 0.0


def test_series_ci_with_replicas_is_not_zero_width(store: ClickHouseStore) -> None:
    # Three examples right in every replica: the variance of the per-example means is 0 and the CI was [100, 100].
    for k in range(2):
        rows = [("q", i, r, True, None) for i in range(3) for r in range(2)]
        record(store, f"s{k}", PlantedRun(rows), experiment="e", labels={"step": str(k)}, order=k)
    for point in build_series(store, "e").datasets[0].points:
        assert point.ci_high == 100.0 and point.ci_low < 60.0  # Wilson's interval of 3 of 3: [43.85, 100]


def test_a_request_gated_against_itself_is_rejected() -> None:
    # The gate block accepted its own eval id as the baseline: the gate then compared the evaluation with itself.
    from pydantic import ValidationError as RequestInvalid

    from budeval.schemas.request import EvalRequest

    request = {"eval_id": "ck-2", "model": {"name": "m", "source": {"type": "huggingface", "path": "org/m"}},
               "datasets": ["tiny_qa"]}
    EvalRequest.model_validate({**request, "gate": {"baseline": "ck-1"}})
    with pytest.raises(RequestInvalid, match="itself"):
        EvalRequest.model_validate({**request, "gate": {"baseline": "ck-2"}})


def test_sign_flip_p_value_against_exact_enumeration() -> None:
    # Reference: every one of the 2^10 sign patterns of ten differences (the exact randomization distribution).
    from itertools import product

    from budeval.decisions.stats import sign_flip_p_value

    diffs = [-50.0, -50.0, -100.0, 0.0, 50.0, -50.0, -100.0, -50.0, 50.0, -100.0]
    observed = abs(sum(diffs)) / len(diffs)
    means = [abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) / len(diffs)
             for signs in product((1, -1), repeat=len(diffs))]
    exact = sum(m >= observed - 1e-9 for m in means) / len(means)
    values, counts = [-100.0, -50.0, 0.0, 50.0], [3, 4, 1, 2]
    got = sign_flip_p_value(values, counts, iterations=20_000, seed=1)
    assert got == pytest.approx(exact, abs=0.01)
    assert sign_flip_p_value([-100.0], [1]) == 1.0 and sign_flip_p_value([0.0], [7]) == 1.0
    assert sign_flip_p_value(values, counts, seed=3) == sign_flip_p_value(values, counts, seed=3)
