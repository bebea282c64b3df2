"""A small real HTTP app that plays Dapr's app side for the sidecar tests: programmatic subscriptions
(``GET /dapr/subscribe``) and deliveries answered from a script per route."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SubscriberApp:
    """Every delivery is recorded, scripted or not; a scripted route answers from its list of (status, body)
    replies (the last one repeats), any other route answers 404 -- which Dapr's contract treats as "drop".

    ``port`` 0 picks a free port at :meth:`start`; a test that must know the port before the app listens (a sidecar
    started first) sets it beforehand.
    """

    def __init__(
        self, subscriptions: list[dict[str, Any]], answers: dict[str, list[tuple[int, Any]]], port: int = 0
    ) -> None:
        self.subscriptions = subscriptions
        self.answers = answers
        self.port = port
        self.received: list[tuple[str, str, Any]] = []  # (route, content type, body)
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SubscriberApp:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _reply(self, status: int, body: Any) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-length", str(len(data)))
                if data:
                    self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply(*((200, app.subscriptions) if self.path == "/dapr/subscribe" else (404, None)))

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"null")
                with app.lock:
                    app.received.append((self.path, self.headers.get("content-type", ""), body))
                    script = app.answers.get(self.path)
                    reply = (404, None) if script is None else script.pop(0) if len(script) > 1 else script[0]
                self._reply(*reply)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def on(self, route: str) -> list[Any]:
        """The bodies delivered to ``route``, in order."""
        with self.lock:
            return [body for r, _, body in self.received if r == route]

    def count(self, route: str) -> int:
        return len(self.on(route))
