"""Helpers for the D2 embedded-sidecar tests: a sidecar plus the real Dapr workflow SDK, and a tiny real HTTP app."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf

from budeval.sidecar.embedded import EmbeddedSidecar


@dataclass
class Stack:
    sidecar: EmbeddedSidecar
    runtime: wf.WorkflowRuntime
    client: wf.DaprWorkflowClient


@contextmanager
def running_stack(state: Path, register: Callable[[wf.WorkflowRuntime], None]) -> Iterator[Stack]:
    """Sidecar + started WorkflowRuntime + client, all pointed at the sidecar's gRPC port (no env variables)."""
    sidecar = EmbeddedSidecar(state).start()
    runtime = wf.WorkflowRuntime(host="127.0.0.1", port=str(sidecar.grpc_port))
    register(runtime)
    runtime.start()
    client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
    try:
        yield Stack(sidecar, runtime, client)
    finally:
        client.close()
        runtime.shutdown()
        sidecar.stop()


@dataclass
class App:
    """A real HTTP app with programmatic subscriptions; each route answers from a script of (status, body) replies."""

    subscriptions: list[dict[str, Any]]
    scripts: dict[str, list[tuple[int, Any]]]
    port: int = 0
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> App:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
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
                if self.path == "/dapr/subscribe":
                    self._reply(200, app.subscriptions)
                else:
                    self._reply(404, None)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"null")
                with app.lock:
                    app.received.setdefault(self.path, []).append(body)
                    app.headers.append(dict(self.headers))
                    script = app.scripts.get(self.path)
                    if script is None:
                        reply: tuple[int, Any] = (404, None)
                    else:
                        reply = script.pop(0) if len(script) > 1 else script[0]
                self._reply(*reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def count(self, route: str) -> int:
        with self.lock:
            return len(self.received.get(route, []))

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
