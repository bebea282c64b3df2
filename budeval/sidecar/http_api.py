"""The sidecar's HTTP face: Dapr's health and publish endpoints, plus the embedded-only topic log reader."""

from __future__ import annotations

import json
import logging
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from budeval.sidecar.pubsub import PubSub

log = logging.getLogger("budeval.sidecar")

_PUBLISH = re.compile(r"^/v1\.0/publish/([^/]+)/(.+)$")
_MAX_BODY = 64 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    server: SidecarHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per request would flood the logs
        log.debug("http: " + format, *args)

    def _send(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path in ("/v1.0/healthz", "/v1.0/healthz/outbound"):
            self._send(204)
        elif url.path == "/v1.0-alpha1/messages":
            query = parse_qs(url.query)
            topic = query.get("topic", [""])[0]
            try:
                after = int(query.get("after", ["0"])[0] or 0)
                limit = int(query.get("limit", ["1000"])[0] or 1000)
            except ValueError:
                self._send(400, {"errorCode": "ERR_BAD_REQUEST", "message": "after and limit must be integers"})
                return
            if not topic:
                self._send(400, {"errorCode": "ERR_BAD_REQUEST", "message": "topic is required"})
                return
            self._send(200, self.server.pubsub.read(topic, after, max(1, min(limit, 10000))))
        else:
            self._send(
                404, {"errorCode": "ERR_NOT_FOUND", "message": f"{url.path} is not served by the embedded sidecar"}
            )

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        match = _PUBLISH.match(url.path)
        length = int(self.headers.get("content-length") or 0)
        if length > _MAX_BODY:
            self._send(413, {"errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE", "message": "body too large"})
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        if match is None:
            self._send(
                404, {"errorCode": "ERR_NOT_FOUND", "message": f"{url.path} is not served by the embedded sidecar"}
            )
            return
        pubsub, topic = unquote(match.group(1)), unquote(match.group(2))
        self.server.pubsub.publish(pubsub, topic, body, self.headers.get("content-type") or "application/json")
        self._send(204)


class SidecarHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], pubsub: PubSub) -> None:
        self.pubsub = pubsub
        super().__init__(address, _Handler)
