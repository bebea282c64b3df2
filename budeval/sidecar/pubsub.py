"""Dapr pub/sub, embedded: a persisted topic log and at-least-once delivery to the app's programmatic subscriptions.

Each subscription (pubsub, topic, route) has a cursor in SQLite; a message is POSTed to the app as a CloudEvent and
the cursor moves once the app answered (Dapr's contract: 2xx SUCCESS or empty body = done, DROP or HTTP 404 = dropped,
RETRY / other status / connection error = redelivered later with backoff from a persisted retry row). A new
subscription starts at the beginning of its topic (like Dapr's Redis streams consumer group), so a request published
before the app came up is still delivered.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

log = logging.getLogger("budeval.sidecar")

CLOUDEVENTS_JSON = "application/cloudevents+json"
_BATCH = 32
_BACKOFF_FIRST_S = 0.2
_BACKOFF_MAX_S = 10.0


@dataclass(frozen=True)
class Subscription:
    pubsub: str
    topic: str
    route: str

    @property
    def key(self) -> str:
        return f"{self.pubsub}|{self.topic}|{self.route}"


def to_cloudevent(pubsub: str, topic: str, data: bytes, content_type: str) -> dict[str, Any]:
    """The CloudEvent daprd would deliver: a CloudEvent body is kept (plus topic/pubsubname), anything else wrapped."""
    content_type = (content_type or "application/json").split(";")[0].strip().lower()
    if content_type == CLOUDEVENTS_JSON:
        try:
            event = json.loads(data)
        except ValueError:
            event = None
        if isinstance(event, dict):
            event.setdefault("specversion", "1.0")
            event.setdefault("id", str(uuid.uuid4()))
            event.setdefault("source", "budeval")
            event.setdefault("type", "com.dapr.event.sent")
            event["topic"] = topic
            event["pubsubname"] = pubsub
            return event
    body: Any
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            body = json.loads(data)
        except ValueError:
            body = data.decode("utf-8", "replace")
    else:
        body = data.decode("utf-8", "replace")
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "budeval",
        "type": "com.dapr.event.sent",
        "datacontenttype": content_type,
        "time": datetime.now(UTC).isoformat(),
        "topic": topic,
        "pubsubname": pubsub,
        "data": body,
    }


def parse_subscriptions(body: Any) -> list[Subscription]:
    """``GET /dapr/subscribe`` answer -> subscriptions (``route`` or ``routes.default``); bad entries are skipped."""
    subs: list[Subscription] = []
    for item in body if isinstance(body, list) else []:
        if not isinstance(item, dict):
            continue
        pubsub, topic = item.get("pubsubname"), item.get("topic")
        route = item.get("route")
        routes = item.get("routes")
        if not route and isinstance(routes, dict):
            route = routes.get("default")
        if isinstance(pubsub, str) and isinstance(topic, str) and isinstance(route, str) and route:
            subs.append(Subscription(pubsub, topic, route if route.startswith("/") else "/" + route))
        else:
            log.warning("ignoring malformed subscription: %r", item)
    return subs


class PubSub:
    """The topic log (publish, read) and the delivery loop; one SQLite connection of its own."""

    def __init__(self, conn: sqlite3.Connection, app_url: str | None = None) -> None:
        self._db = conn
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._app_url = app_url.rstrip("/") if app_url else None
        self._subs: list[Subscription] | None = None
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sidecar-deliver")
        self._http = httpx.Client(timeout=60.0)

    # ---- log ---------------------------------------------------------------------------------------------------
    def publish(self, pubsub: str, topic: str, data: bytes, content_type: str) -> int:
        event = to_cloudevent(pubsub, topic, data, content_type)
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO messages (pubsub, topic, event, created) VALUES (?, ?, ?, ?)",
                (pubsub, topic, json.dumps(event), time.time()),
            )
            seq = int(cur.lastrowid or 0)
        self._wake.set()
        return seq

    def read(self, topic: str, after: int, limit: int = 1000) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, event, created FROM messages WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?",
                (topic, after, limit),
            ).fetchall()
        return [{"seq": seq, "topic": t, "event": json.loads(ev), "published_at": at} for seq, t, ev, at in rows]

    # ---- delivery ----------------------------------------------------------------------------------------------
    def set_app(self, app_url: str | None) -> None:
        self._app_url = app_url.rstrip("/") if app_url else None
        self._subs = None
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sidecar-pubsub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            busy = False
            try:
                if self._app_url and self._subs is None:
                    self._subs = self._load_subscriptions()
                for sub in self._subs or []:
                    busy = self._deliver_new(sub) or busy
                    self._deliver_retries(sub)
            except Exception:  # the loop must survive anything (a bad app answer, a closed pool at shutdown)
                log.exception("pub/sub delivery loop error")
            if not busy:
                self._wake.wait(0.2)
                self._wake.clear()

    def _load_subscriptions(self) -> list[Subscription] | None:
        try:
            answer = self._http.get(f"{self._app_url}/dapr/subscribe", timeout=5.0)
        except httpx.HTTPError:
            return None  # the app is not listening yet: daprd waits for the app port too
        if answer.status_code == 404:
            return []
        if not answer.is_success:
            return None
        try:
            subs = parse_subscriptions(answer.json())
        except ValueError:
            log.warning("app answered /dapr/subscribe with invalid JSON")
            return []
        log.info("subscriptions loaded: %s", [s.key for s in subs])
        return subs

    def _cursor(self, sub: Subscription) -> int:
        with self._lock:
            row = self._db.execute("SELECT seq FROM cursors WHERE sub = ?", (sub.key,)).fetchone()
        return int(row[0]) if row else 0

    def _deliver_new(self, sub: Subscription) -> bool:
        cursor = self._cursor(sub)
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event FROM messages WHERE pubsub = ? AND topic = ? AND seq > ? ORDER BY seq LIMIT ?",
                (sub.pubsub, sub.topic, cursor, _BATCH),
            ).fetchall()
        if not rows:
            return False
        outcomes = list(self._pool.map(lambda row: self._post(sub, row[1]), rows))
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            for (seq, _), outcome in zip(rows, outcomes, strict=True):
                if outcome == "retry":
                    self._db.execute(
                        "INSERT OR REPLACE INTO retries (sub, seq, attempt, due) VALUES (?, ?, 1, ?)",
                        (sub.key, seq, now + _BACKOFF_FIRST_S),
                    )
            self._db.execute("INSERT OR REPLACE INTO cursors (sub, seq) VALUES (?, ?)", (sub.key, rows[-1][0]))
            self._db.execute("COMMIT")
        return len(rows) == _BATCH

    def _deliver_retries(self, sub: Subscription) -> None:
        now = time.time()
        with self._lock:
            rows = self._db.execute(
                "SELECT r.seq, r.attempt, m.event FROM retries r JOIN messages m ON m.seq = r.seq "
                "WHERE r.sub = ? AND r.due <= ? ORDER BY r.seq LIMIT ?",
                (sub.key, now, _BATCH),
            ).fetchall()
        if not rows:
            return
        outcomes = list(self._pool.map(lambda row: self._post(sub, row[2]), rows))
        with self._lock:
            self._db.execute("BEGIN")
            for (seq, attempt, _), outcome in zip(rows, outcomes, strict=True):
                if outcome == "retry":
                    delay = min(_BACKOFF_FIRST_S * 2**attempt, _BACKOFF_MAX_S)
                    self._db.execute(
                        "UPDATE retries SET attempt = ?, due = ? WHERE sub = ? AND seq = ?",
                        (attempt + 1, time.time() + delay, sub.key, seq),
                    )
                else:
                    self._db.execute("DELETE FROM retries WHERE sub = ? AND seq = ?", (sub.key, seq))
            self._db.execute("COMMIT")

    def _post(self, sub: Subscription, event_json: str) -> str:
        """One delivery attempt: ``done``, ``drop`` or ``retry``."""
        try:
            answer = self._http.post(
                f"{self._app_url}{sub.route}", content=event_json, headers={"content-type": CLOUDEVENTS_JSON}
            )
        except httpx.HTTPError as exc:
            log.info("delivery to %s failed (%s): will retry", sub.route, type(exc).__name__)
            return "retry"
        if answer.status_code == 404:
            log.warning("app answered 404 on %s: message dropped", sub.route)
            return "drop"
        if not answer.is_success:
            return "retry"
        status = ""
        if answer.content.strip():
            try:
                body = answer.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                status = str(body.get("status", "")).upper()
        if status in ("", "SUCCESS"):
            return "done"
        if status == "DROP":
            log.warning("app answered DROP on %s: message dropped", sub.route)
            return "drop"
        return "retry"  # RETRY, or a status Dapr does not know (daprd treats that as an error)
