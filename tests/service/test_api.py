"""The HTTP API over real HTTP: auth, submit, status, results, cancel, leaderboard, compare, health and metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from budeval.storage.base import EvaluationRecord, ScoreRow
from tests.service.conftest import API_TOKEN, Harness
from tests.service.support import FakeState, Status

REQUEST: dict[str, Any] = {
    "eval_id": "api-1",
    "model": {"name": "m", "source": {"type": "huggingface", "path": "/models/m"}},
    "datasets": ["tiny_qa"],
}

PROTECTED = [
    ("GET", "/evals/api-1"),
    ("GET", "/evals/api-1/results"),
    ("DELETE", "/evals/api-1"),
    ("POST", "/evals"),
    ("GET", "/leaderboard"),
    ("GET", "/compare?a=x&b=y"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_api_route_needs_the_bearer_token(harness: Harness, method: str, path: str) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {API_TOKEN}"},
                    {"authorization": API_TOKEN}, {"authorization": f"Bearer {API_TOKEN}x"}):
        answer = httpx.request(method, harness.url + path, headers=headers, content=b"{}", timeout=10)
        assert answer.status_code == 401, (headers, answer.text)
        assert API_TOKEN not in answer.text
    assert harness.workflows.scheduled == [] and harness.backend.cancelled == []
    right = httpx.request(method, harness.url + path, headers=harness.auth, content=b"{}", timeout=10)
    assert right.status_code != 401


def test_health_metrics_and_docs_are_open(harness: Harness) -> None:
    assert httpx.get(f"{harness.url}/healthz", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(f"{harness.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["checks"]["store"] == "ok"
    assert httpx.get(f"{harness.url}/metrics", timeout=10).status_code == 200
    spec = httpx.get(f"{harness.url}/openapi.json", timeout=10).json()
    assert {"/evals", "/evals/{eval_id}", "/evals/{eval_id}/results", "/leaderboard", "/compare"} <= set(spec["paths"])


def test_every_response_says_its_server_time(harness: Harness) -> None:
    """``Server-Timing: app;dur=<ms>`` (W3C Server Timing) on open, refused and authorised answers alike: the figure
    scripts/bench_ui.py reads as a page's server time."""
    from budeval.service.timing import server_time_ms

    answers = [httpx.get(f"{harness.url}/healthz", timeout=10), httpx.get(f"{harness.url}/evals/x", timeout=10),
               httpx.get(f"{harness.url}/evals/no-such-eval", headers=harness.auth, timeout=10)]
    assert [a.status_code for a in answers] == [200, 401, 404]
    for answer in answers:
        took = server_time_ms(answer.headers.get("server-timing"))
        assert took is not None and 0 <= took < 60_000, answer.headers


def test_server_timing_header_parsing() -> None:
    from budeval.service.timing import server_time_ms

    assert server_time_ms("app;dur=12.5") == 12.5
    assert server_time_ms('db;dur=3, app;desc="x";dur=7') == 7.0
    assert server_time_ms(None) is None and server_time_ms("app") is None and server_time_ms("app;dur=x") is None


def test_readyz_reports_an_unreachable_store(harness: Harness) -> None:
    harness.store.down = True
    ready = httpx.get(f"{harness.url}/readyz", timeout=10)
    assert ready.status_code == 503 and ready.json()["checks"]["store"].startswith("unavailable")
    assert httpx.get(f"{harness.url}/healthz", timeout=10).status_code == 200


def test_readyz_reports_an_unreachable_sidecar(harness: Harness) -> None:
    # The harness has no sidecar URL; an app pointed at a closed port must say "not ready".
    from budeval.service.app import ServiceDeps, create_app
    from budeval.service.auth import Auth
    from tests.service.support import serve_app

    app = create_app(ServiceDeps(harness.settings, harness.workflows, harness.store, harness.backend,
                                 harness.publisher, {}, Auth(API_TOKEN), sidecar_http_url="http://127.0.0.1:9"))
    with serve_app(app) as url:
        ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 503 and ready.json()["checks"]["sidecar"].startswith("unavailable")


def test_post_evals_accepts_deduplicates_and_rejects(harness: Harness) -> None:
    def post(body: str | bytes) -> httpx.Response:
        return httpx.post(f"{harness.url}/evals", content=body, headers=harness.auth, timeout=10)

    first = post(json.dumps(REQUEST))
    assert first.status_code == 202 and first.json() == {"eval_id": "api-1", "status": "accepted"}
    again = post(json.dumps(REQUEST))
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert len(harness.workflows.scheduled) == 1

    schema = post(json.dumps({**REQUEST, "eval_id": "api-2", "generation": {"temperature": 9}}))
    assert schema.status_code == 422
    assert schema.json()["field"] == "generation.temperature" and schema.json()["eval_id"] == "api-2"
    broken = post(b"{not json")
    assert broken.status_code == 400 and broken.json()["error"] == "rejected"
    assert len(harness.events("rejected")) == 2  # the HTTP path publishes `rejected` exactly like the topic path

    harness.workflows.down = True
    unavailable = post(json.dumps({**REQUEST, "eval_id": "api-3"}))
    assert unavailable.status_code == 503 and unavailable.headers["retry-after"]
    assert len(harness.workflows.scheduled) == 1


def _stored(h: Harness, eval_id: str, status: str = "completed", score: float = 50.0) -> None:
    h.store.record_evaluation(EvaluationRecord(eval_id=eval_id, status=status, model_name="m",  # type: ignore[arg-type]
                                               created_at=datetime.now(UTC)))
    h.store.scores[eval_id] = [ScoreRow(eval_id=eval_id, run_id="r0", model="m", dataset="tiny_qa",
                                        metric="accuracy", score=score, status="ok")]


def test_get_eval_shows_workflow_row_scores_and_failures(harness: Harness) -> None:
    output = {"eval_id": "done-1", "outcome": "partial", "reason": "r1: boom",
              "failures": [{"run_id": "r1", "reason": "boom", "reason_class": "crash"}], "scores": []}
    harness.workflows.instances["done-1"] = FakeState("done-1", Status.COMPLETED, json.dumps(output))
    _stored(harness, "done-1", status="partial")
    body = httpx.get(f"{harness.url}/evals/done-1", headers=harness.auth, timeout=10).json()
    assert body["status"] == "partial" and body["workflow"]["status"] == "COMPLETED"
    assert body["evaluation"]["eval_id"] == "done-1"
    assert body["scores"][0]["score"] == 50.0
    assert body["failures"][0]["reason_class"] == "crash"
    results = httpx.get(f"{harness.url}/evals/done-1/results", headers=harness.auth, timeout=10).json()
    assert [r["metric"] for r in results["scores"]] == ["accuracy"]

    harness.workflows.instances["run-1"] = FakeState("run-1", Status.RUNNING)
    running = httpx.get(f"{harness.url}/evals/run-1", headers=harness.auth, timeout=10).json()
    assert running["status"] == "running" and running["evaluation"] is None

    assert httpx.get(f"{harness.url}/evals/nope", headers=harness.auth, timeout=10).status_code == 404
    assert httpx.get(f"{harness.url}/evals/nope/results", headers=harness.auth, timeout=10).status_code == 404
    bad = httpx.get(f"{harness.url}/evals/Bad..Id", headers=harness.auth, timeout=10)
    assert bad.status_code == 422 and bad.json()["error"] == "unsafe_id"


def test_cancel_is_an_event_into_the_workflow_which_alone_stops_records_and_publishes(harness: Harness) -> None:
    accepted = httpx.post(f"{harness.url}/evals", content=json.dumps({**REQUEST, "eval_id": "c-1"}),
                          headers=harness.auth, timeout=10)
    assert accepted.status_code == 202
    answer = httpx.delete(f"{harness.url}/evals/c-1", headers=harness.auth, timeout=10)
    assert answer.status_code == 202 and answer.json()["status"] == "cancel_requested", answer.text
    assert harness.workflows.raised == [("c-1", "cancel_requested", {"reason": "cancelled by request"})]
    # The API itself terminates nothing, stops no run, publishes nothing and writes no row: the workflow does.
    assert harness.workflows.terminated == [] and harness.backend.cancelled == []
    assert harness.events("cancelled") == [] and "c-1" not in harness.store.records
    # Once the workflow recorded it: cancelling again is `already`, nothing raised again.
    harness.store.record_evaluation(EvaluationRecord(eval_id="c-1", status="cancelled"))
    again = httpx.delete(f"{harness.url}/evals/c-1", headers=harness.auth, timeout=10)
    assert again.status_code == 200 and again.json() == {"eval_id": "c-1", "status": "cancelled", "already": True}
    assert len(harness.workflows.raised) == 1
    # A finished evaluation cannot be cancelled (409 with its status); neither can one whose workflow is gone.
    harness.workflows.instances["fin-1"] = FakeState("fin-1", Status.COMPLETED, json.dumps({"outcome": "partial"}))
    _stored(harness, "fin-1", status="partial")
    finished = httpx.delete(f"{harness.url}/evals/fin-1", headers=harness.auth, timeout=10)
    assert finished.status_code == 409 and finished.json()["current"] == "partial", finished.text
    harness.store.record_evaluation(EvaluationRecord(eval_id="gone-1", status="running"))
    gone = httpx.delete(f"{harness.url}/evals/gone-1", headers=harness.auth, timeout=10)
    assert gone.status_code == 409 and "workflow is gone" in gone.json()["message"]
    assert httpx.delete(f"{harness.url}/evals/nope", headers=harness.auth, timeout=10).status_code == 404
    harness.workflows.instances["run-2"] = FakeState("run-2", Status.RUNNING)
    harness.workflows.down = True
    assert httpx.delete(f"{harness.url}/evals/run-2", headers=harness.auth, timeout=10).status_code == 503
    assert len(harness.workflows.raised) == 1 and harness.backend.cancelled == []


def test_force_re_runs_a_failed_or_cancelled_id_and_never_a_running_or_finished_one(harness: Harness) -> None:
    def post(eval_id: str, **extra: Any) -> httpx.Response:
        body = json.dumps({**REQUEST, "eval_id": eval_id, **extra})
        return httpx.post(f"{harness.url}/evals", content=body, headers=harness.auth, timeout=10)

    assert post("f-1").status_code == 202
    running = post("f-1", force=True)  # still running: a duplicate, forced or not
    assert running.status_code == 200 and running.json()["status"] == "duplicate"
    assert harness.workflows.purged == []
    failed = harness.workflows.instances["f-1"]
    failed.runtime_status, failed.serialized_output = Status.COMPLETED, json.dumps({"outcome": "failed"})
    plain = post("f-1")
    assert plain.status_code == 200 and "force" in plain.json()["message"]
    rerun = post("f-1", force=True)
    assert rerun.status_code == 202 and rerun.json() == {"eval_id": "f-1", "status": "accepted", "attempt": 2}
    assert harness.workflows.purged == ["f-1"]
    assert harness.workflows.scheduled[-1][2]["attempt"] == 2
    third = harness.workflows.instances["f-1"]
    third.runtime_status, third.serialized_output = Status.COMPLETED, json.dumps({"outcome": "cancelled"})
    assert post("f-1", force=True).json()["attempt"] == 3
    done = harness.workflows.instances["f-1"]
    done.runtime_status, done.serialized_output = Status.COMPLETED, json.dumps({"outcome": "completed"})
    completed = post("f-1", force=True)
    assert completed.status_code == 200 and completed.json()["status"] == "duplicate"
    # A workflow gone, its row failed: the row says which attempt was last.
    harness.store.record_evaluation(EvaluationRecord(eval_id="f-2", status="failed", provenance={"attempt": 4}))
    assert post("f-2", force=True).json()["attempt"] == 5
    assert len(harness.workflows.purged) == 2


def test_leaderboard_is_paginated_and_compare_pairs_scores(harness: Harness) -> None:
    for i in range(5):
        _stored(harness, f"lb-{i}", score=float(10 * i))
    page = httpx.get(f"{harness.url}/leaderboard", params={"limit": 2}, headers=harness.auth, timeout=10).json()
    assert [r["score"] for r in page["items"]] == [40.0, 30.0] and page["next_offset"] == 2
    last = httpx.get(f"{harness.url}/leaderboard", params={"limit": 2, "offset": 4}, headers=harness.auth,
                     timeout=10).json()
    assert [r["score"] for r in last["items"]] == [0.0] and last["next_offset"] is None
    assert httpx.get(f"{harness.url}/leaderboard", params={"limit": 0}, headers=harness.auth,
                     timeout=10).status_code == 422
    cmp = httpx.get(f"{harness.url}/compare", params={"a": "lb-1", "b": "lb-3"}, headers=harness.auth,
                    timeout=10).json()
    assert cmp["scores"] == [{"dataset": "tiny_qa", "metric": "accuracy", "a": 10.0, "b": 30.0}]
    missing = httpx.get(f"{harness.url}/compare", params={"a": "lb-1", "b": "nope"}, headers=harness.auth, timeout=10)
    assert missing.status_code == 404


def test_metrics_count_accepted_rejected_and_events(harness: Harness) -> None:
    httpx.post(f"{harness.url}/evals", content=json.dumps({**REQUEST, "eval_id": "m-1"}), headers=harness.auth,
               timeout=10)
    httpx.post(f"{harness.url}/evals", content=b"[]", headers=harness.auth, timeout=10)
    text = httpx.get(f"{harness.url}/metrics", timeout=10).text
    assert 'budeval_evaluations_total{status="accepted"} 1.0' in text
    assert 'budeval_rejected_requests_total{source="http"} 1.0' in text
    assert 'budeval_events_published_total{kind="rejected"} 1.0' in text
    assert 'budeval_evaluations_total{status="rejected"} 1.0' in text
    for family in ("budeval_run_duration_seconds", "budeval_extraction_duration_seconds", "budeval_rows_written",
                   "budeval_events_published"):
        assert f"# TYPE {family}" in text
