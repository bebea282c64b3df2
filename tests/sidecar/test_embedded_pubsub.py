"""Pub/sub of the embedded sidecar: Dapr's publish APIs (gRPC through the unmodified ``DaprClient``, and HTTP), the
topic log, and delivery to a real HTTP app under Dapr's app-response contract (SUCCESS / RETRY / DROP / 404 /
errors). The one sidecar pub/sub suite: it absorbed the former test_sdk_pubsub.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dapr.clients import DaprClient

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


def _log(sc: EmbeddedSidecar, topic: str, after: int = 0) -> list[dict[str, Any]]:
    answer = httpx.get(f"http://127.0.0.1:{sc.http_port}/v1.0-alpha1/messages", params={"topic": topic, "after": after},
                       timeout=5)
    answer.raise_for_status()
    body: list[dict[str, Any]] = answer.json()
    return body


@pytest.mark.parametrize("via", ["grpc", "http"])
def test_delivery_follows_the_app_contract(
    via: str, sidecar: EmbeddedSidecar, app: SubscriberApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SUCCESS once, a CloudEvent body passed through, RETRY / HTTP 500 redelivered (the same message) until success,
    DROP / 404 never again; published through the SDK's gRPC ``PublishEvent`` or Dapr's HTTP publish API."""
    ce = {"specversion": "1.0", "id": "req-1", "source": "me", "type": "x.requested", "data": {"k": "v"}}
    bodies = [("ok", b'{"a": 1}', "application/json"), ("ok", json.dumps(ce).encode(), "application/cloudevents+json"),
              ("retry", b'"r"', "application/json"), ("flaky", b'"f"', "application/json"),
              ("drop", b'"d"', "application/json"), ("gone", b'"g"', "application/json")]
    if via == "grpc":
        # DaprClient polls http://127.0.0.1:DAPR_HTTP_PORT/v1.0/healthz/outbound first
        monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
        monkeypatch.delenv("DAPR_HTTP_ENDPOINT", raising=False)
        with DaprClient(address=f"127.0.0.1:{sidecar.grpc_port}") as client:
            for topic, body, content_type in bodies:
                client.publish_event(pubsub_name="ps", topic_name=topic, data=body, data_content_type=content_type)
    else:
        for topic, body, content_type in bodies:
            assert _publish(sidecar, topic, body, content_type).status_code == 204
    wait_until(lambda: app.count("/ok") == 2 and app.count("/retry") == 3 and app.count("/flaky") == 2,
               what="successes, two RETRY answers then a success, a 500 then a success")
    wait_until(lambda: app.count("/drop") == 1 and app.count("/gone") == 1, what="the dropped deliveries")
    delivered = app.on("/ok")  # delivery is concurrent, as under daprd: not in publish order
    passed = next(event for event in delivered if event["id"] == "req-1")
    wrapped = next(event for event in delivered if event["id"] != "req-1")
    assert wrapped["specversion"] == "1.0" and wrapped["data"] == {"a": 1}
    assert wrapped["topic"] == "ok" and wrapped["pubsubname"] == "ps"
    assert wrapped["datacontenttype"] == "application/json"
    assert (passed["source"], passed["type"], passed["data"]) == ("me", "x.requested", {"k": "v"})
    assert passed["topic"] == "ok" and passed["pubsubname"] == "ps"
    assert {ct for _, ct, _ in app.received} == {"application/cloudevents+json"}
    assert len({event["id"] for event in app.on("/retry")}) == 1  # the same message, redelivered
    assert len({event["id"] for event in app.on("/flaky")}) == 1
    time.sleep(1.0)  # longer than the first retry backoff (0.2 s): a finished, dropped or 404'd message must not return
    assert (app.count("/ok"), app.count("/retry"), app.count("/flaky")) == (2, 3, 2)
    assert app.count("/drop") == 1 and app.count("/gone") == 1  # "/gone" answers 404 (no such route): dropped
    assert [m["event"]["data"] for m in _log(sidecar, "ok")] == [{"a": 1}, {"k": "v"}]


def test_publish_apis_and_topic_log(
    sidecar: EmbeddedSidecar, app: SubscriberApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP and gRPC publishing (JSON and text) into one topic log, read in publish order and paged by ``after``."""
    base = f"http://127.0.0.1:{sidecar.http_port}"
    for i in range(3):
        assert httpx.post(f"{base}/v1.0/publish/ps/events", json={"i": i}, timeout=5).status_code == 204
    assert _publish(sidecar, "events", b"plain", "text/plain").status_code == 204
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
    monkeypatch.delenv("DAPR_HTTP_ENDPOINT", raising=False)
    with DaprClient(address=f"127.0.0.1:{sidecar.grpc_port}") as client:
        client.publish_event(pubsub_name="ps", topic_name="events", data=json.dumps({"n": 1}),
                             data_content_type="application/json")
        client.publish_event(pubsub_name="ps", topic_name="events", data="grpc plain", data_content_type="text/plain")
    log = _log(sidecar, "events")
    assert [m["event"]["data"] for m in log] == [{"i": 0}, {"i": 1}, {"i": 2}, "plain", {"n": 1}, "grpc plain"]
    assert [m["topic"] for m in log] == ["events"] * 6
    assert [m["seq"] for m in _log(sidecar, "events", log[3]["seq"])] == [m["seq"] for m in log[4:]]
    assert httpx.get(f"{base}/v1.0-alpha1/messages", params={"topic": "events", "after": "x"}, timeout=5).status_code \
        == 400
    assert httpx.get(f"{base}/v1.0/state/x", timeout=5).status_code == 404  # not a Dapr API this sidecar serves
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


def test_messages_published_before_the_app_is_known_are_delivered_once_it_is(tmp_path: Path) -> None:
    """No app at first (``set_app`` later, as ``budeval serve`` does once its API listens): kept, then delivered."""
    app = SubscriberApp(SUBSCRIPTIONS, {"/ok": [(200, None)]}).start()
    sc = EmbeddedSidecar(tmp_path / "state.db").start()
    try:
        assert _publish(sc, "ok", b'{"early": true}', "application/json").status_code == 204
        time.sleep(0.3)
        assert app.received == []
        sc.set_app(app.url)
        wait_until(lambda: app.count("/ok") == 1, what="delivery once the app is known")
        assert app.on("/ok")[0]["data"] == {"early": True}
    finally:
        sc.stop()
        app.stop()
