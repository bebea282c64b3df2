"""``budeval gate`` (exit codes, --json, one-line errors) and ``GET /gate`` (auth, 200/404/409/422) over a real chDB
store filled through the store's write API and the real reader of real OpenCompass output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from budeval.cli.main import main
from budeval.config import Settings
from budeval.events.publisher import MemoryPublisher
from budeval.service.app import ServiceDeps, create_app
from budeval.service.auth import Auth
from budeval.storage.base import EvaluationRecord
from budeval.storage.factory import open_store
from tests.service.support import StandInBackend, StandInWorkflows, serve_app

from .support import OPENCOMPASS, PlantedRun, planted, record, record_fixture, verdicts

TOKEN = "gate-test-token"


def _fill(dsn: str) -> None:
    store = open_store(dsn)
    store.migrate()
    try:
        base, regressed = planted(2000, 1600, losses=100, gains=20)
        _, small = planted(20, 14, losses=3, gains=1)
        small_base, _ = planted(20, 14)
        record(store, "base", PlantedRun(verdicts("qa", base) + verdicts("mcq", small_base)), order=0)
        record(store, "same", PlantedRun(verdicts("qa", base) + verdicts("mcq", small_base)), order=1)
        record(store, "worse", PlantedRun(verdicts("qa", regressed) + verdicts("mcq", small_base)), order=2)
        record(store, "noisy", PlantedRun(verdicts("qa", base) + verdicts("mcq", small)), order=3)
        record(store, "other", PlantedRun(verdicts("qa", base[:1900])), order=4)
        record_fixture(store, "mcq-a", OPENCOMPASS / "mcq", order=5)
        record_fixture(store, "mcq-b", OPENCOMPASS / "mcq", order=6)
        for eval_id in ("two-a", "two-b"):  # two models on each side: paired model by model
            store.store_run(eval_id, "r0", PlantedRun(verdicts("qa", small_base), model="alpha"))
            store.store_run(eval_id, "r1", PlantedRun(verdicts("qa", small_base[::-1]), model="beta"))
            store.record_evaluation(EvaluationRecord(eval_id=eval_id, status="completed"))
    finally:
        store.close()


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    where = f"chdb://{tmp_path_factory.mktemp('gate-cli') / 'ch'}"
    _fill(where)
    return where


def _gate(dsn: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(["gate", *args, "--store", dsn])
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_exit_codes_follow_the_verdict(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _gate(dsn, capsys, "base", "worse", "--json")
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "regression" and report["exit_code"] == 1
    qa = next(d for d in report["datasets"] if d["dataset"] == "qa")
    assert qa["delta"] == pytest.approx(-4.0) and qa["method"] == "mcnemar" and qa["verdict"] == "regression"
    # the small dataset is inconclusive, but a regression anywhere decides
    assert next(d for d in report["datasets"] if d["dataset"] == "mcq")["verdict"] == "inconclusive"

    code, out, _ = _gate(dsn, capsys, "base", "worse", "--tolerance", "6", "--json")
    assert code == 2 and json.loads(out)["verdict"] == "inconclusive"  # mcq (20 examples) cannot be told

    code, out, _ = _gate(dsn, capsys, "base", "noisy")
    assert code == 2 and "inconclusive: failed (exit 2)" in out
    assert "mcq" in out and "mcnemar 3-/1+" in out


def test_cli_passes_when_no_dataset_can_change_the_answer(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _gate(dsn, capsys, "base", "same", "--tolerance", "40", "--correction", "bh", "--json")
    report = json.loads(out)
    assert code == 0 and report["verdict"] == "no-difference" and report["passed"] is True
    assert report["options"]["correction"] == "bh" and report["options"]["tolerance"] == 40.0


def test_cli_refusals_and_errors_exit_3_with_one_line(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _gate(dsn, capsys, "base", "other", "--json")
    doc = json.loads(out)
    assert code == 3 and doc["error"] == "gate_refused"
    assert {o["dataset"]: (o["paired"], o["only_baseline"], o["only_candidate"]) for o in doc["overlap"]} == {
        "qa": (1900, 100, 0),
        "mcq": (0, 20, 0),
    }
    assert err.count("\n") == 1 and err.startswith("budeval: error: the example sets differ")

    code, _, err = _gate(dsn, capsys, "base", "missing")
    assert code == 3 and "no evaluation 'missing'" in err
    code, _, err = _gate(dsn, capsys, "base", "same", "--alpha", "2")
    assert code == 3 and "alpha" in err
    code, _, err = _gate(dsn, capsys, "base", "same", "--correction", "bonferroni")
    assert code == 3 and "invalid choice" in err  # a malformed command line is not "inconclusive"


def test_cli_on_real_output(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _gate(dsn, capsys, "mcq-a", "mcq-b", "--json")
    [row] = json.loads(out)["datasets"]
    assert code == 2 and row["dataset"] == "tiny_mcq" and row["examples"] == 4 and row["delta"] == 0.0


def test_cli_names_the_model_when_both_sides_hold_several(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _gate(dsn, capsys, "two-a", "two-b")
    lines = out.splitlines()
    assert code == 2 and lines[1].startswith("model  dataset")
    assert lines[2].startswith("alpha  qa") and lines[3].startswith("beta   qa")


@pytest.fixture(scope="module")
def api(dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = open_store(dsn)
    settings = Settings(data_dir=tmp_path_factory.mktemp("gate-api"))
    app = create_app(
        ServiceDeps(settings, StandInWorkflows(), store, StandInBackend(), MemoryPublisher(), {}, Auth(TOKEN))
    )
    try:
        with serve_app(app) as url:
            yield url
    finally:
        store.close()


def _get(url: str, token: str | None = TOKEN, **params: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url + "/gate", params=params, headers=headers, timeout=60)


def test_api_gate(api: str) -> None:
    answer = _get(api, baseline="base", candidate="worse")
    assert answer.status_code == 200
    body = answer.json()
    assert body["verdict"] == "regression" and body["exit_code"] == 1
    assert body["datasets"][1]["dataset"] == "qa" and body["datasets"][1]["losses"] == 100
    assert _get(api, token=None, baseline="base", candidate="worse").status_code == 401
    assert _get(api, token="wrong", baseline="base", candidate="worse").status_code == 401


def test_api_gate_errors(api: str) -> None:
    refused = _get(api, baseline="base", candidate="other")
    assert refused.status_code == 409 and refused.json()["error"] == "gate_refused"
    assert {o["dataset"] for o in refused.json()["overlap"]} == {"qa", "mcq"}
    assert _get(api, baseline="base", candidate="missing").status_code == 404
    assert _get(api, baseline="latest:tier=x", candidate="worse").status_code == 404
    assert _get(api, baseline="worst:x", candidate="worse").status_code == 422
    assert _get(api, baseline="base", candidate="worse", correction="bonferroni").status_code == 422
    assert _get(api, baseline="base", candidate="worse", alpha=0).status_code == 422


def test_api_gate_exact_p_values(api: str) -> None:
    body = _get(api, baseline="base", candidate="noisy", seed=3).json()
    assert body["verdict"] == "inconclusive"
    # mcq: 3 losses, 1 gain -> 2 * P(X <= 1 | n=4) = 10/16; qa identical -> 1; Holm over the two
    assert [d["p_value"] for d in body["datasets"]] == pytest.approx([0.625, 1.0])
    assert [d["p_adjusted"] for d in body["datasets"]] == pytest.approx([1.0, 1.0])

