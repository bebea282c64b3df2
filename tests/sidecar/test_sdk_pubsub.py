"""Pub/sub through the embedded sidecar: the real DaprClient publishes, a real HTTP app receives as under daprd."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from dapr.clients import DaprClient

from budeval.sidecar import EmbeddedSidecar
from tests.sidecar.app_stub import SubscriberApp
from tests.support import wait_until

PS = "pubsub"


def _subs(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for topic, route in pairs:
        if topic == "t-routes":  # the newer "routes.default" form
            out.append({"pubsubname": PS, "topic": topic, "routes": {"default": route}})
        else:
            out.append({"pubsubname": PS, "topic": topic, "route": route})
    return out


wait_for = partial(wait_until, what="condition", interval=0.02)


@pytest.fixture()
def app() -> Iterator[SubscriberApp]:
    stub = SubscriberApp(
        _subs(
            ("t-ok", "/ok"),
            ("t-retry", "/retry"),
            ("t-drop", "/drop"),
            ("t-404", "/gone"),
            ("t-routes", "/r"),
            ("t-500", "/err"),
        ),
        {
            "/ok": [(200, {"status": "SUCCESS"})],
            "/retry": [(200, {"status": "RETRY"}), (200, {"status": "RETRY"}), (200, {"status": "SUCCESS"})],
            "/drop": [(200, {"status": "DROP"})],
            "/r": [(200, None)],
            "/err": [(500, None), (200, {"status": "SUCCESS"})],
        },
    ).start()
    yield stub
    stub.stop()


@pytest.fixture()
def sidecar(tmp_path: Path, app: SubscriberApp, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedSidecar]:
    sc = EmbeddedSidecar(tmp_path / "state.db", app_url=app.url)
    sc.start()
    # DaprClient polls {DAPR_HTTP_ENDPOINT or http://127.0.0.1:DAPR_HTTP_PORT}/v1.0/healthz/outbound first.
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sc.http_port))
    monkeypatch.delenv("DAPR_HTTP_ENDPOINT", raising=False)
    yield sc
    sc.stop()


def _log(sc: EmbeddedSidecar, topic: str, after: int = 0) -> list[dict[str, Any]]:
    answer = httpx.get(f"http://127.0.0.1:{sc.http_port}/v1.0-alpha1/messages", params={"topic": topic, "after": after})
    answer.raise_for_status()
    body: list[dict[str, Any]] = answer.json()
    return body


def test_grpc_publish_delivers_cloudevents_with_the_app_contract(sidecar: EmbeddedSidecar, app: SubscriberApp) -> None:
    with DaprClient(address=f"127.0.0.1:{sidecar.grpc_port}") as client:
        client.publish_event(PS, "t-ok", data='{"n": 1}', data_content_type="application/json")
        ce = '{"specversion": "1.0", "id": "my-id", "source": "me", "type": "x.y", "data": {"n": 2}}'
        client.publish_event(PS, "t-ok", data=ce, data_content_type="application/cloudevents+json")
        client.publish_event(PS, "t-retry", data='{"n": 3}', data_content_type="application/json")
        client.publish_event(PS, "t-drop", data='{"n": 4}', data_content_type="application/json")
        client.publish_event(PS, "t-404", data='{"n": 5}', data_content_type="application/json")
        client.publish_event(PS, "t-routes", data='{"n": 6}', data_content_type="application/json")
        client.publish_event(PS, "t-500", data='{"n": 7}', data_content_type="application/json")
    wait_for(lambda: len(app.on("/ok")) == 2 and len(app.on("/retry")) == 3 and len(app.on("/err")) == 2)
    wait_for(lambda: len(app.on("/drop")) == 1 and len(app.on("/r")) == 1 and len(app.on("/gone")) == 1)
    wrapped, passed = app.on("/ok")
    assert wrapped["data"] == {"n": 1} and wrapped["specversion"] == "1.0" and wrapped["topic"] == "t-ok"
    assert wrapped["pubsubname"] == PS and wrapped["datacontenttype"] == "application/json"
    assert passed["id"] == "my-id" and passed["source"] == "me" and passed["data"] == {"n": 2}
    assert {ct for _, ct, _ in app.received} == {"application/cloudevents+json"}
    retried = app.on("/retry")
    assert len({e["id"] for e in retried}) == 1  # the same message, redelivered
    time.sleep(1.0)  # a dropped or 404'd message must not come back
    assert len(app.on("/drop")) == 1 and len(app.on("/retry")) == 3 and len(app.on("/r")) == 1
    assert len(app.on("/gone")) == 1  # the app answered 404 (no such route): dropped, not retried
    assert [m["event"]["data"] for m in _log(sidecar, "t-ok")] == [{"n": 1}, {"n": 2}]


def test_http_publish_and_topic_log(sidecar: EmbeddedSidecar, app: SubscriberApp) -> None:
    base = f"http://127.0.0.1:{sidecar.http_port}"
    assert httpx.get(f"{base}/v1.0/healthz").status_code == 204
    assert httpx.get(f"{base}/v1.0/healthz/outbound").status_code == 204
    for i in range(3):
        answer = httpx.post(f"{base}/v1.0/publish/{PS}/events", json={"i": i})
        assert answer.status_code == 204
    answer = httpx.post(f"{base}/v1.0/publish/{PS}/events", content=b"plain", headers={"content-type": "text/plain"})
    assert answer.status_code == 204
    log = _log(sidecar, "events")
    assert [m["event"]["data"] for m in log] == [{"i": 0}, {"i": 1}, {"i": 2}, "plain"]
    assert [m["topic"] for m in log] == ["events"] * 4
    after = log[1]["seq"]
    assert [m["event"]["data"] for m in _log(sidecar, "events", after)] == [{"i": 2}, "plain"]
    assert httpx.get(f"{base}/v1.0-alpha1/messages", params={"topic": "events", "after": "x"}).status_code == 400
    assert httpx.get(f"{base}/v1.0/state/x").status_code == 404


def test_messages_published_before_the_app_listens_are_delivered(tmp_path: Path, app: SubscriberApp) -> None:
    sc = EmbeddedSidecar(tmp_path / "state.db")
    sc.start()
    try:
        httpx.post(f"http://127.0.0.1:{sc.http_port}/v1.0/publish/{PS}/t-ok", json={"early": True})
        time.sleep(0.3)
        assert app.on("/ok") == []
        sc.set_app(app.url)
        wait_for(lambda: len(app.on("/ok")) == 1)
        assert app.on("/ok")[0]["data"] == {"early": True}
    finally:
        sc.stop()
