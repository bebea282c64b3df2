"""The Dapr HTTP API subset of the embedded sidecar (health, publish) plus its own topic-log reader.

* ``GET /v1.0/healthz`` and ``/v1.0/healthz/outbound`` -> 204 (``DaprClient`` polls the latter before any call).
* ``POST /v1.0/publish/{pubsub}/{topic}`` -> 204, as daprd (a non-CloudEvent body is wrapped in one).
* ``GET /v1.0-alpha1/messages?topic=T&after=SEQ[&limit=N]`` -> ``[{"seq", "topic", "event", "published_at"}]``:
  embedded only; the CLI's ``--wait``, tests and the benchmark follow the events topic with it.
  ``GET /v1.0-alpha1/messages/last?topic=T`` -> ``{"seq": N}``: where a follower that wants only what comes next
  starts (``submit --wait`` reads it before publishing).

Limits (docs/security.md): it listens on 127.0.0.1 only; a client has ``read_timeout_s`` to send a whole request
(a deadline from the first byte, not per read), at most ``max_connections`` connections are served at once (more are
closed at once, no thread started), and a JSON body nesting deeper than ``max_json_depth`` is a 400.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from budeval.jsonlimits import DEFAULT_MAX_DEPTH, check_depth
from budeval.sidecar.topics import Broker

MAX_BODY = 64 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    server: SidecarHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the app logs what matters

    def handle_one_request(self) -> None:
        # One deadline for the whole request (a slow sender cannot stretch it byte by byte); cleared once it is read.
        self._deadline = threading.Timer(self.server.read_timeout_s, self._abort)
        self._deadline.daemon = True
        self._deadline.start()
        try:
            super().handle_one_request()
        except (TimeoutError, OSError):
            self.close_connection = True
        finally:
            self._deadline.cancel()

    def _abort(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _request_read(self) -> None:
        self._deadline.cancel()

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
        self._request_read()
        url = urlsplit(self.path)
        if url.path in ("/v1.0/healthz", "/v1.0/healthz/outbound"):
            self._send(204)
        elif url.path == "/v1.0-alpha1/messages/last":
            topic = (parse_qs(url.query).get("topic") or [""])[0]
            if not topic:
                self._error(400, "ERR_MALFORMED_REQUEST", "topic is required")
                return
            self._send(200, {"seq": self.server.broker.last_seq(topic)})
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
        raw_length = (self.headers.get("content-length") or "0").strip()
        if not (raw_length.isascii() and raw_length.isdigit()):  # RFC 9110 8.6: 1*DIGIT; "-1" would read to EOF
            self._error(400, "ERR_MALFORMED_REQUEST", "content-length must be a non-negative integer")
            self.close_connection = True
            return
        length = int(raw_length)
        if length > MAX_BODY:
            self._error(413, "ERR_PUBSUB_REQUEST_TOO_LARGE", "body too large")
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self.close_connection = True  # the client went away, or the deadline cut it off
            return
        self._request_read()
        if len(parts) != 4 or parts[:2] != ["v1.0", "publish"]:
            self._error(404, "ERR_NOT_FOUND", f"no route {url.path}")
            return
        pubsub, topic = unquote(parts[2]), unquote(parts[3])
        try:
            check_depth(body, self.server.max_json_depth)
            self.server.broker.publish(pubsub, topic, body, self.headers.get("content-type") or "")
        except (ValueError, RecursionError) as exc:
            message = str(exc) if isinstance(exc, ValueError) else "the body is nested too deeply"
            self._error(400, "ERR_PUBSUB_CLOUD_EVENTS_SER", message[:300])
            return
        self._send(204)


class SidecarHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, broker: Broker, *, read_timeout_s: float = 30.0,
                 max_connections: int = 256, max_json_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.broker = broker
        self.read_timeout_s = read_timeout_s
        self.max_json_depth = max_json_depth
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__((host, port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="sidecar-http", daemon=True)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection, but at most ``max_connections`` of them: beyond that the connection is closed."""
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
