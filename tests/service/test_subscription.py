"""The Dapr subscription contract over real HTTP: SUCCESS starts one workflow, DROP + `rejected`, RETRY on trouble."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from budeval.errors import TransientError
from budeval.events.cloudevents import CloudEvent
from budeval.workflow import names
from budeval.workflow.models import WorkflowInput
from tests.service.conftest import APP_TOKEN, Harness

REQUEST: dict[str, Any] = {
    "eval_id": "sub-1",
    "model": {"name": "m", "source": {"type": "huggingface", "path": "/models/m"}},
    "datasets": ["tiny_qa"],
}


def cloudevent(data: Any, event_id: str = "ev-1") -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": event_id, "source": "test", "type": "io.budeval.evaluation.requested",
         "datacontenttype": "application/json", "data": data}
    ).encode()


def deliver(h: Harness, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{h.url}/events/requests", content=body, timeout=30,
                      headers={"content-type": "application/cloudevents+json", **(headers or {})})


def test_subscribe_lists_the_request_topic(harness: Harness) -> None:
    answer = httpx.get(f"{harness.url}/dapr/subscribe", timeout=10)
    assert answer.status_code == 200
    assert answer.json() == [
        {"pubsubname": harness.settings.pubsub_name, "topic": harness.settings.request_topic,
         "route": "/events/requests"}
    ]


def test_valid_request_starts_its_workflow_and_answers_success(harness: Harness) -> None:
    answer = deliver(harness, cloudevent(REQUEST))
    assert answer.status_code == 200 and answer.json() == {"status": "SUCCESS"}
    assert len(harness.workflows.scheduled) == 1
    workflow, instance_id, payload = harness.workflows.scheduled[0]
    assert workflow == names.EVALUATION_WORKFLOW and instance_id == "sub-1"
    started = WorkflowInput.model_validate(payload)
    assert started.request.eval_id == "sub-1"
    assert started.max_parallel_runs == harness.settings.max_parallel_runs
    assert started.poll_initial_s == harness.settings.poll_initial_s
    assert harness.events("rejected") == []


def test_request_data_as_json_string_is_accepted(harness: Harness) -> None:
    answer = deliver(harness, cloudevent(json.dumps({**REQUEST, "eval_id": "sub-str"})))
    assert answer.json() == {"status": "SUCCESS"}
    assert [i for _, i, _ in harness.workflows.scheduled] == ["sub-str"]


def test_duplicate_delivery_starts_one_workflow(harness: Harness) -> None:
    body = cloudevent({**REQUEST, "eval_id": "dup-1"})
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: deliver(harness, body).json(), range(16)))
    assert answers == [{"status": "SUCCESS"}] * 16
    assert [i for _, i, _ in harness.workflows.scheduled] == ["dup-1"]
    again = deliver(harness, cloudevent({**REQUEST, "eval_id": "dup-1"}, event_id="another-id"))
    assert again.json() == {"status": "SUCCESS"}
    assert len(harness.workflows.scheduled) == 1


def test_malformed_request_is_dropped_with_a_rejected_event(harness: Harness) -> None:
    answer = deliver(harness, cloudevent({**REQUEST, "eval_id": "Bad/Id"}, event_id="ev-bad"))
    assert answer.json() == {"status": "DROP"}
    (event,) = harness.events("rejected")
    assert event["id"] == "rejected.ev-bad"
    assert event["data"]["field"] == "eval_id" and event["data"]["reason"]
    assert event["data"]["request_id"] == "ev-bad"
    assert harness.workflows.scheduled == [] and harness.backend.submitted == []


def test_unknown_dataset_and_suite_are_rejected_before_any_workflow(harness: Harness) -> None:
    deliver(harness, cloudevent({**REQUEST, "eval_id": "cat-1", "datasets": ["no_such_dataset"]}, "c1"))
    suite_request = {k: v for k, v in REQUEST.items() if k != "datasets"}
    deliver(harness, cloudevent({**suite_request, "eval_id": "cat-2", "suite": "no-such-suite"}, "c2"))
    ds, suite = harness.events("rejected")
    assert ds["data"]["eval_id"] == "cat-1" and ds["data"]["field"] == "datasets"
    assert "no_such_dataset" in ds["data"]["reason"]
    assert suite["data"]["eval_id"] == "cat-2" and suite["data"]["field"] == "suite"
    assert harness.workflows.scheduled == []


def test_sidecar_unreachable_answers_retry_without_rejecting(harness: Harness) -> None:
    harness.workflows.down = True
    answer = deliver(harness, cloudevent({**REQUEST, "eval_id": "later-1"}))
    assert answer.json() == {"status": "RETRY"}
    assert harness.events() == []
    harness.workflows.down = False
    assert deliver(harness, cloudevent({**REQUEST, "eval_id": "later-1"})).json() == {"status": "SUCCESS"}


def test_rejection_that_cannot_be_published_is_retried(harness: Harness) -> None:
    original = harness.publisher.publish

    def broken(topic: str, event: CloudEvent) -> None:
        raise TransientError("broker down")

    harness.publisher.publish = broken  # type: ignore[method-assign]
    try:
        assert deliver(harness, cloudevent({"eval_id": "x"})).json() == {"status": "RETRY"}
    finally:
        harness.publisher.publish = original  # type: ignore[method-assign]
    assert deliver(harness, cloudevent({"eval_id": "x"})).json() == {"status": "DROP"}


def test_dapr_routes_require_the_app_token_when_configured(guarded: Harness) -> None:
    assert httpx.get(f"{guarded.url}/dapr/subscribe", timeout=10).status_code == 401
    assert deliver(guarded, cloudevent(REQUEST)).status_code == 401
    assert deliver(guarded, cloudevent(REQUEST), {"dapr-api-token": "wrong"}).status_code == 401
    assert guarded.workflows.scheduled == []
    ok = httpx.get(f"{guarded.url}/dapr/subscribe", headers={"dapr-api-token": APP_TOKEN}, timeout=10)
    assert ok.status_code == 200
    assert deliver(guarded, cloudevent(REQUEST), {"dapr-api-token": APP_TOKEN}).json() == {"status": "SUCCESS"}
