"""Pub/sub of the embedded sidecar: a persisted topic log plus at-least-once delivery to the app, as daprd does it.

Subscriptions are read from the app's ``GET /dapr/subscribe`` (programmatic subscriptions). Every message published
to a subscribed topic is POSTed to the route as CloudEvent JSON; the app's answer follows Dapr's contract: 2xx with
``{"status": "SUCCESS"}`` or no body -> delivered; ``{"status": "RETRY"}``, any other non-2xx or a connection error ->
retried with backoff, without limit; ``{"status": "DROP"}`` or HTTP 404 -> dropped (logged). Messages and pending
deliveries are in SQLite, so a published message survives ``kill -9`` and is delivered after the restart. On the
topics named in ``forget_bodies`` (budeval: its request topic), a message delivered or dropped on every route loses
its body in the log (the envelope stays): a rejected request may hold what its sender should not have put in it.
"""

from __future__ import annotations

import base64
import heapq
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from budeval.logs import get_logger
from budeval.sidecar.store import SidecarStore

CLOUDEVENT_JSON = "application/cloudevents+json"
MAX_BACKOFF_S = 10.0


def _is_json(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return base == "application/json" or base.endswith("+json")


def to_cloudevent(pubsub: str, topic: str, data: bytes, content_type: str) -> dict[str, Any]:
    """The CloudEvent daprd would deliver: a CloudEvent body is kept (topic/pubsubname set), anything else wrapped."""
    content_type = content_type or "application/json"
    parsed: Any = None
    if _is_json(content_type):
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            raise ValueError(f"the body is not valid JSON (content type {content_type})") from None
    if content_type.split(";", 1)[0].strip().lower() == CLOUDEVENT_JSON or (
        isinstance(parsed, dict) and "specversion" in parsed
    ):
        if not isinstance(parsed, dict):
            raise ValueError("a CloudEvent body must be a JSON object")
        event = dict(parsed)
        event.setdefault("id", str(uuid.uuid4()))
        event.setdefault("specversion", "1.0")
        event.setdefault("source", "budeval-embedded-sidecar")
        event.setdefault("type", "com.dapr.event.sent")
        event.setdefault("datacontenttype", "application/json")
    else:
        event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "budeval-embedded-sidecar",
                 "type": "com.dapr.event.sent", "datacontenttype": content_type,
                 "time": datetime.now(UTC).isoformat()}
        if _is_json(content_type):
            event["data"] = parsed
        else:
            try:
                event["data"] = data.decode("utf-8")
            except UnicodeDecodeError:
                event["data_base64"] = base64.b64encode(data).decode("ascii")
    event["topic"], event["pubsubname"] = topic, pubsub
    return event


def _without_body(event_json: str, outcome: str) -> str:
    """The stored CloudEvent with ``data``/``data_base64`` replaced by a marker (ids, type and topic stay)."""
    try:
        event = json.loads(event_json)
    except ValueError:
        return json.dumps({"redacted": outcome.lower()})
    if not isinstance(event, dict):
        return json.dumps({"redacted": outcome.lower()})
    event.pop("data_base64", None)
    event["data"] = {"redacted": outcome.lower()}
    return json.dumps(event, separators=(",", ":"))


def parse_subscriptions(body: Any) -> list[tuple[str, str, str]]:
    """``(pubsub, topic, route)`` from a ``/dapr/subscribe`` answer; entries without a usable route are skipped."""
    subs: list[tuple[str, str, str]] = []
    for item in body if isinstance(body, list) else []:
        if not isinstance(item, dict):
            continue
        pubsub, topic = item.get("pubsubname") or item.get("pubsubName"), item.get("topic")
        route = item.get("route")
        routes = item.get("routes")
        if not route and isinstance(routes, dict):
            route = routes.get("default")  # rule-based routes (CEL) are not evaluated here
        if isinstance(pubsub, str) and isinstance(topic, str) and isinstance(route, str) and route:
            subs.append((pubsub, topic, route if route.startswith("/") else "/" + route))
    return subs


class Broker:
    """The topic log and the delivery workers."""

    def __init__(self, store: SidecarStore, app_url: str | None = None, app_token: str | None = None,
                 workers: int = 4, forget_bodies: frozenset[str] = frozenset()) -> None:
        self.store = store
        self.forget_bodies = forget_bodies
        self.lock = threading.Condition(threading.Lock())
        self.app_url = app_url
        self.app_token = app_token
        self.subs: list[tuple[str, str, str]] | None = None  # None until the app answered /dapr/subscribe
        self.heap: list[tuple[float, int, str]] = []
        self.closed = False
        self.log = get_logger(component="sidecar-pubsub")
        self._workers = [threading.Thread(target=self._deliver_loop, name=f"sidecar-deliver-{i}", daemon=True)
                         for i in range(workers)]
        self._subscriber = threading.Thread(target=self._subscribe_loop, name="sidecar-subscribe", daemon=True)
        self._http = httpx.Client(timeout=30.0)
        with store.lock:
            for seq, route, next_at in store.db.execute("SELECT seq, route, next_at FROM deliveries"):
                self.heap.append((next_at, seq, route))
        heapq.heapify(self.heap)

    def start(self) -> None:
        for worker in self._workers:
            worker.start()
        self._subscriber.start()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify_all()
        for thread in [*self._workers, self._subscriber]:
            if thread.is_alive():
                thread.join(timeout=5)
        self._http.close()

    def set_app(self, app_url: str) -> None:
        """Point delivery at the app (``http://host:port``); its subscriptions are (re)read."""
        with self.lock:
            self.app_url, self.subs = app_url.rstrip("/"), None
            self.lock.notify_all()

    # ---- publishing --------------------------------------------------------------------------------------------
    def publish(self, pubsub: str, topic: str, data: bytes, content_type: str) -> int:
        if not pubsub or not topic:
            raise ValueError("pubsub name and topic are required")
        event = to_cloudevent(pubsub, topic, data, content_type)
        with self.lock:
            subs = self.subs
            with self.store.tx() as db:
                cur = db.execute(
                    "INSERT INTO messages (pubsub, topic, event, created, fanned_out) VALUES (?,?,?,?,?)",
                    (pubsub, topic, json.dumps(event, separators=(",", ":")), time.time(), int(subs is not None)),
                )
                seq = int(cur.lastrowid or 0)
                if subs is not None:
                    self._fan_out(db, seq, pubsub, topic, subs)
        return seq

    def _fan_out(self, db: Any, seq: int, pubsub: str, topic: str, subs: list[tuple[str, str, str]]) -> None:
        now = time.time()
        for route in sorted({r for p, t, r in subs if p == pubsub and t == topic}):
            db.execute("INSERT OR IGNORE INTO deliveries (seq, route, attempts, next_at) VALUES (?,?,0,?)",
                       (seq, route, now))
            heapq.heappush(self.heap, (now, seq, route))
            self.lock.notify()

    def last_seq(self, topic: str) -> int:
        """The sequence number of the topic's newest message (0 for none): a follower starts after it."""
        with self.store.lock:
            row = self.store.db.execute("SELECT MAX(seq) FROM messages WHERE topic=?", (topic,)).fetchone()
        return int(row[0] or 0) if row else 0

    def messages(self, topic: str, after: int, limit: int = 1000) -> list[dict[str, Any]]:
        with self.store.lock:
            rows = self.store.db.execute(
                "SELECT seq, topic, event, created FROM messages WHERE topic=? AND seq>? ORDER BY seq LIMIT ?",
                (topic, after, limit),
            ).fetchall()
        return [{"seq": seq, "topic": t, "event": json.loads(text), "published_at": created}
                for seq, t, text, created in rows]

    # ---- subscriptions ------------------------------------------------------------------------------------------
    def _subscribe_loop(self) -> None:
        delay = 0.05
        while True:
            with self.lock:
                while not self.closed and (self.subs is not None or self.app_url is None):
                    self.lock.wait(1.0)
                if self.closed:
                    return
                url = self.app_url
            subs = self._fetch_subscriptions(str(url))
            if subs is None:
                with self.lock:
                    self.lock.wait(delay)
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.05
            with self.lock:
                if url != self.app_url:
                    continue
                self.subs = subs
                with self.store.tx() as db:
                    pending = db.execute(
                        "SELECT seq, pubsub, topic FROM messages WHERE fanned_out=0 ORDER BY seq").fetchall()
                    for seq, pubsub, topic in pending:
                        self._fan_out(db, seq, pubsub, topic, subs)
                    db.execute("UPDATE messages SET fanned_out=1 WHERE fanned_out=0")
            self.log.info("app subscriptions loaded", subscriptions=[f"{p}/{t} -> {r}" for p, t, r in subs])

    def _fetch_subscriptions(self, url: str) -> list[tuple[str, str, str]] | None:
        try:
            answer = self._http.get(f"{url}/dapr/subscribe", headers=self._headers(), timeout=5.0)
        except httpx.HTTPError:
            return None  # the app is not up yet
        if answer.status_code == 404:
            return []
        if not answer.is_success:
            return None
        try:
            return parse_subscriptions(answer.json())
        except ValueError:
            self.log.warning("app's /dapr/subscribe answered invalid JSON; no subscriptions")
            return []

    def _headers(self) -> dict[str, str]:
        return {"dapr-api-token": self.app_token} if self.app_token else {}

    # ---- delivery -------------------------------------------------------------------------------------------------
    def _deliver_loop(self) -> None:
        while True:
            with self.lock:
                while True:
                    if self.closed:
                        return
                    now = time.time()
                    if self.heap and self.heap[0][0] <= now and self.app_url:
                        _, seq, route = heapq.heappop(self.heap)
                        break
                    wait = self.heap[0][0] - now if self.heap else 1.0
                    self.lock.wait(max(0.001, min(wait, 1.0)))
                url = self.app_url
            self._deliver(str(url), seq, route)

    def _deliver(self, url: str, seq: int, route: str) -> None:
        with self.store.lock:
            row = self.store.db.execute("SELECT event, topic FROM messages WHERE seq=?", (seq,)).fetchone()
            attempts_row = self.store.db.execute(
                "SELECT attempts FROM deliveries WHERE seq=? AND route=?", (seq, route)).fetchone()
        if row is None or attempts_row is None:
            return
        outcome = self._post(url + route, row[0])
        if outcome in ("SUCCESS", "DROP"):
            if outcome == "DROP":
                self.log.warning("message dropped by the app", seq=seq, route=route)
            with self.store.tx() as db:
                db.execute("DELETE FROM deliveries WHERE seq=? AND route=?", (seq, route))
                if row[1] in self.forget_bodies and db.execute(
                    "SELECT 1 FROM deliveries WHERE seq=? LIMIT 1", (seq,)
                ).fetchone() is None:
                    db.execute("UPDATE messages SET event=? WHERE seq=?", (_without_body(row[0], outcome), seq))
            return
        attempts = int(attempts_row[0]) + 1
        next_at = time.time() + min(0.1 * 2 ** min(attempts, 10), MAX_BACKOFF_S)
        with self.store.tx() as db:
            db.execute("UPDATE deliveries SET attempts=?, next_at=? WHERE seq=? AND route=?",
                       (attempts, next_at, seq, route))
        with self.lock:
            heapq.heappush(self.heap, (next_at, seq, route))
            self.lock.notify()
        self.log.info("message delivery will be retried", seq=seq, route=route, attempts=attempts, reason=outcome)

    def _post(self, url: str, body: str) -> str:
        try:
            answer = self._http.post(url, content=body.encode("utf-8"),
                                     headers={"content-type": CLOUDEVENT_JSON, **self._headers()})
        except httpx.HTTPError as exc:
            return f"error {type(exc).__name__}"
        if answer.status_code == 404:
            return "DROP"
        if not answer.is_success:
            return f"HTTP {answer.status_code}"
        try:
            status = answer.json().get("status") if answer.content else None
        except (ValueError, AttributeError):
            status = None
        status = str(status).upper() if status else "SUCCESS"
        return status if status in ("SUCCESS", "RETRY", "DROP") else "RETRY"  # an unknown status is an error
