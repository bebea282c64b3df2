"""The HTTP API on the real chDB store: results, leaderboard and compare of evaluations parsed from real OpenCompass
output (tests/fixtures), over real HTTP. The workflow engine is the only stand-in (no sidecar needed here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from budeval.config import Settings
from budeval.engine.results import parse_run
from budeval.events.publisher import MemoryPublisher
from budeval.service.app import ServiceDeps, create_app
from budeval.service.auth import Auth
from budeval.service.metrics import CountingStore
from budeval.storage.base import EvaluationRecord
from budeval.storage.factory import open_store
from tests.service.support import StandInBackend, StandInWorkflows, serve_app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "opencompass"
REALWORLD = Path(__file__).resolve().parents[1] / "fixtures" / "realworld"
TOKEN = "store-test-token"
SETTINGS: dict[str, Settings] = {}  # the served app's settings (its models root), for tests that plan requests


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    data_dir = tmp_path_factory.mktemp("store-api")
    store = CountingStore(open_store(f"chdb://{data_dir / 'clickhouse'}"))
    store.migrate()
    runs = (("qa-a", FIXTURES / "qa_chat"), ("qa-b", FIXTURES / "qa_chat"), ("mcq-a", FIXTURES / "mcq"),
            ("err-a", REALWORLD / "results-error-dict" / "run"))
    for eval_id, fixture in runs:
        parsed = parse_run(fixture)
        store.record_evaluation(EvaluationRecord(eval_id=eval_id, status="completed", model_name="m",
                                                 datasets=[m.dataset for m in parsed.metrics],
                                                 created_at=datetime.now(UTC), finished_at=datetime.now(UTC)))
        store.store_run(eval_id, "r0", parsed)
    settings = SETTINGS["api"] = Settings(data_dir=data_dir, models_root=[data_dir / "models"])
    app = create_app(ServiceDeps(settings, StandInWorkflows(), store, StandInBackend(),
                                 MemoryPublisher(), {}, Auth(TOKEN)))
    try:
        with serve_app(app) as url:
            yield url, store
    finally:
        store.close()


def _get(url: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(url + path, params=params, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)


def test_results_and_status_come_from_the_store(api: tuple[str, Any]) -> None:
    url, _ = api
    results = _get(url, "/evals/qa-a/results").json()
    assert results["status"] == "completed" and results["scores"]
    assert all(r["eval_id"] == "qa-a" for r in results["scores"])
    body = _get(url, "/evals/qa-a").json()
    assert body["status"] == "completed" and body["workflow"] is None and body["scores"] == results["scores"]
    assert _get(url, "/readyz").status_code == 200
    [failed] = _get(url, "/evals/err-a/results").json()["scores"]
    assert failed["score"] is None and failed["status"] == "failed"
    assert failed["reason"].startswith("code eval service connection failed")  # the dataset's failure reason


def test_leaderboard_pages_through_real_rows(api: tuple[str, Any]) -> None:
    url, _ = api
    everything = _get(url, "/leaderboard", limit=1000).json()
    assert everything["items"] and everything["next_offset"] is None
    first = _get(url, "/leaderboard", limit=1).json()
    assert first["items"] == everything["items"][:1]
    if len(everything["items"]) > 1:
        assert first["next_offset"] == 1
        second = _get(url, "/leaderboard", limit=1, offset=1).json()
        assert second["items"] == everything["items"][1:2]
    best = _get(url, "/leaderboard", mode="best").json()
    assert best["items"]
    assert _get(url, "/leaderboard", mode="worst").status_code == 422


def test_compare_pairs_two_evaluations(api: tuple[str, Any]) -> None:
    url, _ = api
    cmp = _get(url, "/compare", a="qa-a", b="qa-b").json()
    assert cmp["scores"], cmp
    assert all(row["delta"] in (0.0, None) for row in cmp["scores"])  # the same output twice: nothing changed
    assert cmp["flips"] == []
    assert _get(url, "/compare", a="qa-a", b="missing").status_code == 404


def test_post_evals_dry_run_answers_the_plan_and_starts_nothing(
    api: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from budeval.service.plan import plan_request

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url, store = api
    settings = SETTINGS["api"]
    model = settings.models_root[0] / "model"  # inside the policy's models root
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text("{}")
    request = {"eval_id": "dry-1", "model": {"name": "m", "source": {"type": "huggingface", "path": str(model)}},
               "datasets": ["tiny_qa"]}
    headers = {"authorization": f"Bearer {TOKEN}"}

    def dry(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{url}/evals", params={"dry_run": "true"}, json=body, headers=headers, timeout=30)

    first = dry(request)
    assert first.status_code == 200, first.text
    plan = first.json()
    assert plan == plan_request(json.dumps(request), settings, {}, store).document()
    assert plan["reuse"]["would_reuse"] is False and plan["configs"]["r0"]["text"]
    store.record_evaluation(EvaluationRecord(eval_id="dry-done", status="completed",
                                             params_hash=plan["identity"]["hash"]))
    again = dry({**request, "eval_id": "dry-2"}).json()
    assert again["reuse"]["would_reuse"] is True and again["reuse"]["from"] == "dry-done"
    rejected = dry({**request, "datasets": ["nope"]})
    assert rejected.status_code == 422 and rejected.json()["valid"] is False
    assert rejected.json()["field"] == "datasets" and "nope" in rejected.json()["reason"]
    assert store.get_evaluation("dry-1") is None and store.get_evaluation("dry-2") is None
