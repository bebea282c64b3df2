"""The Dapr HTTP API subset of the embedded sidecar (health, publish) plus its own topic-log reader.

* ``GET /v1.0/healthz`` and ``/v1.0/healthz/outbound`` -> 204 (``DaprClient`` polls the latter before any call).
* ``POST /v1.0/publish/{pubsub}/{topic}`` -> 204, as daprd (a non-CloudEvent body is wrapped in one).
* ``GET /v1.0-alpha1/messages?topic=T&after=SEQ[&limit=N]`` -> ``[{"seq", "topic", "event", "published_at"}]``:
  embedded only; the CLI's ``--wait``, tests and the benchmark follow the events topic with it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from budeval.sidecar.topics import Broker

MAX_BODY = 64 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    server: SidecarHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the app logs what matters

    def _send(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        if data:
            self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, {"errorCode": code, "message": message})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path in ("/v1.0/healthz", "/v1.0/healthz/outbound"):
            self._send(204)
        elif url.path == "/v1.0-alpha1/messages":
            query = parse_qs(url.query)
            topic = (query.get("topic") or [""])[0]
            try:
                after = int((query.get("after") or ["0"])[0])
                limit = int((query.get("limit") or ["1000"])[0])
            except ValueError:
                self._error(400, "ERR_MALFORMED_REQUEST", "after and limit must be integers")
                return
            if not topic:
                self._error(400, "ERR_MALFORMED_REQUEST", "topic is required")
                return
            self._send(200, self.server.broker.messages(topic, after, max(1, min(limit, 10000))))
        else:
            self._error(404, "ERR_NOT_FOUND", f"no route {url.path}")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            self._error(413, "ERR_PUBSUB_REQUEST_TOO_LARGE", "body too large")
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        if len(parts) != 4 or parts[:2] != ["v1.0", "publish"]:
            self._error(404, "ERR_NOT_FOUND", f"no route {url.path}")
            return
        pubsub, topic = unquote(parts[2]), unquote(parts[3])
        try:
            self.server.broker.publish(pubsub, topic, body, self.headers.get("content-type") or "")
        except ValueError as exc:
            self._error(400, "ERR_PUBSUB_CLOUD_EVENTS_SER", str(exc))
            return
        self._send(204)


class SidecarHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, broker: Broker) -> None:
        self.broker = broker
        super().__init__((host, port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="sidecar-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
