"""A small real HTTP app that plays Dapr's app side: programmatic subscriptions and scripted answers per route."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SubscriberApp:
    """Routes answer from a script: each route has a list of (status code, body) answers; the last one repeats."""

    def __init__(self, subscriptions: list[dict[str, Any]], answers: dict[str, list[tuple[int, Any]]]) -> None:
        self.subscriptions = subscriptions
        self.answers = answers
        self.received: list[tuple[str, str, dict[str, Any]]] = []  # (route, content type, event)
        self.lock = threading.Lock()
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: Any) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/dapr/subscribe":
                    self._reply(200, app.subscriptions)
                else:
                    self._reply(404, None)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with app.lock:
                    script = app.answers.get(self.path)
                    if script is None:
                        self._reply(404, None)
                        return
                    app.received.append((self.path, self.headers.get("content-type", ""), json.loads(body)))
                    code, answer = script.pop(0) if len(script) > 1 else script[0]
                self._reply(code, answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> SubscriberApp:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def on(self, route: str) -> list[dict[str, Any]]:
        with self.lock:
            return [event for r, _, event in self.received if r == route]
