"""Defects a fresh try found in the regression gate (2026-12-01): each test states the expected behaviour, names what
used to go wrong and fails on the code before the fix."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from budeval.cli.main import main
from budeval.decisions.gate import evaluate_gate
from budeval.errors import GateRefusedError
from budeval.schemas.request import EvalRequest
from budeval.storage.clickhouse import ClickHouseStore
from budeval.storage.factory import open_store

from .support import PlantedRun, planted, record, verdicts

_REQUEST = {"eval_id": "ck-2", "model": {"name": "m", "source": {"type": "huggingface", "path": "org/model"}},
            "datasets": ["tiny_qa"], "labels": {"team": "ml ops"}}


def _strict_json(text: str) -> Any:
    def bad(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=bad)


def _gate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(["gate", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with a clear regression: 400 examples, 40 lost (-10 points, p ~ 2e-12)."""
    where = f"chdb://{tmp_path_factory.mktemp('gate') / 'ch'}"
    store = open_store(where)
    store.migrate()
    try:
        base, worse = planted(400, 300, losses=40)
        record(store, "base", PlantedRun(verdicts("qa", base)), order=0)
        record(store, "worse", PlantedRun(verdicts("qa", worse)), order=1)
    finally:
        store.close()
    return where


@pytest.mark.parametrize("tolerance", ["inf", "1e400", "nan", "101"])
def test_a_tolerance_beyond_the_scale_is_a_usage_error(dsn: str, capsys: pytest.CaptureFixture[str],
                                                       tolerance: str) -> None:
    # The CLI had no upper bound (the API and the request's gate block stopped at 100): `--tolerance inf` passed a
    # 10-point regression with exit 0 and printed `"tolerance": Infinity`, which is not JSON.
    code, out, err = _gate(capsys, "base", "worse", "--store", dsn, "--json", "--tolerance", tolerance)
    assert code == 3 and "--tolerance" in err
    assert _strict_json(out)["verdict"] == "error"


@pytest.mark.parametrize("bad", [["--tolerance", "-1"], ["--alpha", "1"], ["--alpha", "1e-20"], ["--iterations", "10"]])
def test_a_bad_option_with_json_prints_an_error_document(dsn: str, capsys: pytest.CaptureFixture[str],
                                                         bad: list[str]) -> None:
    # --json printed nothing on stdout for a bad option (every other error prints its document); --alpha 1e-20 was
    # accepted and failed later as "confidence: must lie strictly between 0 and 1" (an internal field).
    code, out, err = _gate(capsys, "base", "worse", "--store", dsn, "--json", *bad)
    assert code == 3 and bad[0] in err
    doc = _strict_json(out)
    assert doc["verdict"] == "error" and doc["exit_code"] == 3 and bad[0] in doc["message"]


def test_the_request_gate_block_has_the_same_bounds() -> None:
    with pytest.raises(PydanticValidationError):
        EvalRequest.model_validate({**_REQUEST, "gate": {"baseline": "ck-1", "alpha": 1e-20}})
    with pytest.raises(PydanticValidationError):
        EvalRequest.model_validate({**_REQUEST, "gate": {"baseline": "ck-1", "tolerance": float("inf")}})


def test_the_request_gate_block_names_any_label_value_a_request_allows() -> None:
    # `latest:team=ml ops` failed the baseline's pattern although the label {"team": "ml ops"} is valid.
    EvalRequest.model_validate({**_REQUEST, "gate": {"baseline": "latest:team=ml ops"}})


def test_verdicts_and_scores_in_one_dataset_are_refused(store: ClickHouseStore) -> None:
    # 200 examples judged by verdicts (0 or 100) unchanged, 200 scored only (0-1) dropping from 0.9 to 0: the gate
    # averaged both units into a delta of -0.45 "points" and passed. One example judged both ways was refused.
    a = verdicts("qa", [True] * 200) + [("qa", 1000 + i, 0, None, 0.9) for i in range(200)]
    b = verdicts("qa", [True] * 200) + [("qa", 1000 + i, 0, None, 0.0) for i in range(200)]
    record(store, "a", PlantedRun(a), order=0)
    record(store, "b", PlantedRun(b), order=1)
    with pytest.raises(GateRefusedError, match="different units"):
        evaluate_gate(store, "a", "b")


def test_the_bootstrap_ci_stays_within_what_a_difference_can_be(store: ClickHouseStore) -> None:
    # 3 examples x 2 replicas, all right -> all wrong: the small-sample floor widened the CI to [-139.2, -60.8].
    record(store, "a", PlantedRun([("qa", i, r, True, None) for i in range(3) for r in range(2)]), order=0)
    record(store, "b", PlantedRun([("qa", i, r, False, None) for i in range(3) for r in range(2)]), order=1)
    [d] = evaluate_gate(store, "a", "b").datasets
    assert d.method == "bootstrap" and d.delta == -100.0
    assert -100.0 <= d.ci_low <= d.ci_high <= 100.0, (d.ci_low, d.ci_high)
