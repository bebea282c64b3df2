"""Pub/sub of the D2 embedded sidecar: Dapr's publish APIs (gRPC and HTTP), the topic log, and delivery to a real
HTTP app under Dapr's app-response contract (SUCCESS / RETRY / DROP / 404 / errors)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from budeval.sidecar.embedded import EmbeddedSidecar
from tests.sidecar.app_stub import SubscriberApp
from tests.support import wait_until

SUBSCRIPTIONS: list[dict[str, Any]] = [
    {"pubsubname": "ps", "topic": "ok", "route": "/ok"},
    {"pubsubname": "ps", "topic": "retry", "routes": {"default": "/retry"}},
    {"pubsubname": "ps", "topic": "drop", "route": "/drop"},
    {"pubsubname": "ps", "topic": "gone", "route": "/gone"},
    {"pubsubname": "ps", "topic": "flaky", "route": "/flaky"},
]


@pytest.fixture()
def app() -> Iterator[SubscriberApp]:
    scripts: dict[str, list[tuple[int, Any]]] = {
        "/ok": [(200, {"status": "SUCCESS"})],
        "/retry": [(200, {"status": "RETRY"}), (200, {"status": "RETRY"}), (200, None)],
        "/drop": [(200, {"status": "DROP"})],
        "/flaky": [(500, {"error": "down"}), (200, {"status": "SUCCESS"})],
    }
    running = SubscriberApp(SUBSCRIPTIONS, scripts).start()
    yield running
    running.stop()


@pytest.fixture()
def sidecar(tmp_path: Path, app: SubscriberApp) -> Iterator[EmbeddedSidecar]:
    sc = EmbeddedSidecar(tmp_path / "state.db", app_port=app.port).start()
    yield sc
    sc.stop()


def _publish(sc: EmbeddedSidecar, topic: str, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{sc.http_port}/v1.0/publish/ps/{topic}", content=body,
                      headers={"content-type": content_type}, timeout=10)


def test_health_endpoints_answer_204(sidecar: EmbeddedSidecar) -> None:
    for path in ("/v1.0/healthz", "/v1.0/healthz/outbound"):
        assert httpx.get(f"http://127.0.0.1:{sidecar.http_port}{path}", timeout=5).status_code == 204


def test_success_is_delivered_once_as_a_cloudevent(sidecar: EmbeddedSidecar, app: SubscriberApp) -> None:
    assert _publish(sidecar, "ok", b'{"a": 1}', "application/json").status_code == 204
    wait_until(lambda: app.count("/ok") == 1, what="delivery")
    event = app.on("/ok")[0]
    assert event["specversion"] == "1.0" and event["data"] == {"a": 1}
    assert event["topic"] == "ok" and event["pubsubname"] == "ps"
    assert {ct for _, ct, _ in app.received} == {"application/cloudevents+json"}


def test_a_cloudevent_body_passes_through(sidecar: EmbeddedSidecar, app: SubscriberApp) -> None:
    ce = {"specversion": "1.0", "id": "req-1", "source": "me", "type": "x.requested", "data": {"k": "v"}}
    assert _publish(sidecar, "ok", json.dumps(ce).encode(), "application/cloudevents+json").status_code == 204
    wait_until(lambda: app.count("/ok") == 1, what="delivery")
    got = app.on("/ok")[0]
    assert (got["id"], got["type"], got["data"]) == ("req-1", "x.requested", {"k": "v"})


def test_retry_is_redelivered_until_success(sidecar: EmbeddedSidecar, app: SubscriberApp) -> None:
    _publish(sidecar, "retry", b'"r"', "application/json")
    wait_until(lambda: app.count("/retry") == 3, what="two retries and a success")
    _publish(sidecar, "flaky", b'"f"', "application/json")
    wait_until(lambda: app.count("/flaky") == 2, what="a 500, then a success")
    _publish(sidecar, "ok", b'"marker"', "application/json")  # later deliveries prove the earlier ones are done
    wait_until(lambda: app.count("/ok") == 1, what="marker")
    assert app.count("/retry") == 3 and app.count("/flaky") == 2


def test_drop_and_404_are_not_retried(sidecar: EmbeddedSidecar, app: SubscriberApp) -> None:
    _publish(sidecar, "drop", b'"d"', "application/json")
    _publish(sidecar, "gone", b'"g"', "application/json")
    wait_until(lambda: app.count("/drop") == 1 and app.count("/gone") == 1, what="first deliveries")
    _publish(sidecar, "retry", b'"r"', "application/json")
    wait_until(lambda: app.count("/retry") == 3, what="a later delivery with retries")  # > backoff of a retry
    assert app.count("/drop") == 1 and app.count("/gone") == 1


def test_grpc_publish_and_topic_log(
    sidecar: EmbeddedSidecar, app: SubscriberApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(sidecar.grpc_port))
    from dapr.clients import DaprClient

    with DaprClient(address=f"127.0.0.1:{sidecar.grpc_port}") as client:
        client.publish_event(pubsub_name="ps", topic_name="events", data=json.dumps({"n": 1}),
                             data_content_type="application/json")
        client.publish_event(pubsub_name="ps", topic_name="events", data="plain", data_content_type="text/plain")
    log = httpx.get(f"http://127.0.0.1:{sidecar.http_port}/v1.0-alpha1/messages",
                    params={"topic": "events", "after": 0}, timeout=5).json()
    assert [m["event"]["data"] for m in log] == [{"n": 1}, "plain"]
    after = httpx.get(f"http://127.0.0.1:{sidecar.http_port}/v1.0-alpha1/messages",
                      params={"topic": "events", "after": log[0]["seq"]}, timeout=5).json()
    assert [m["seq"] for m in after] == [log[1]["seq"]]
    assert app.received == []  # nobody subscribed to "events"


def test_bad_publish_is_a_400(sidecar: EmbeddedSidecar) -> None:
    assert _publish(sidecar, "ok", b"{not json", "application/json").status_code == 400
    assert _publish(sidecar, "ok", b"[1]", "application/cloudevents+json").status_code == 400


def test_messages_published_before_the_app_is_up_are_delivered_after_restart(tmp_path: Path) -> None:
    app = SubscriberApp(SUBSCRIPTIONS, {"/ok": [(200, None)]})
    app.port = 0
    state = tmp_path / "state.db"
    first = EmbeddedSidecar(state, app_port=1).start()  # nothing listens on port 1: subscriptions unknown
    try:
        assert _publish(first, "ok", b'"early"', "application/json").status_code == 204
    finally:
        first.stop()
    app.start()
    try:
        second = EmbeddedSidecar(state, app_port=app.port).start()
        try:
            wait_until(lambda: app.count("/ok") == 1, what="delivery after restart")
            assert app.on("/ok")[0]["data"] == "early"
        finally:
            second.stop()
    finally:
        app.stop()
