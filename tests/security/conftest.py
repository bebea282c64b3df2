"""The real ``budeval serve`` (embedded sidecar in its own process, local backend) set up as an operator would
harden it, plus a fake OpenAI-compatible endpoint that records every request's headers.

Operator setup of the served instance (module ``secured``):

* credentials: ``team-a`` registered for host ``127.0.0.2`` (``BUDEVAL_CREDENTIALS``); its key and the key of an
  unregistered ``other-team`` are both in the service's environment (``BUDEVAL_SECRET_*``), as in issue 13.
* ``127.0.0.2/32`` allowed despite the loopback deny-list (the fake endpoint listens there); 127.0.0.1 stays denied.
* datasets and models roots in a temporary folder, with a file and a folder outside them and symlinks pointing out.
* ``/docs`` off, ``/metrics`` behind the token, a 2 s read deadline.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.service.serve_process import ServeProcess, serve_env

HERE = Path(__file__).resolve().parent
TEAM_A_KEY = "sk-team-a-0123456789abcdef"
OTHER_KEY = "sk-other-team-fedcba9876543210"
SECRET_CONTENT = "TOP-SECRET-FILE-CONTENT-4711"
ENDPOINT_HOST = "127.0.0.2"


@dataclass
class FakeEndpoint:
    """An OpenAI-compatible endpoint on 127.0.0.2 that records (path, headers) of every request."""

    server: ThreadingHTTPServer
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{ENDPOINT_HOST}:{self.server.server_address[1]}/v1"


def _endpoint() -> FakeEndpoint:
    holder: list[FakeEndpoint] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            holder[0].seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            body = json.dumps({"id": "x", "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "A"}, "finish_reason": "stop"}]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    endpoint = FakeEndpoint(ThreadingHTTPServer((ENDPOINT_HOST, 0), Handler))
    holder.append(endpoint)
    threading.Thread(target=endpoint.server.serve_forever, daemon=True).start()
    return endpoint


@dataclass
class Secured:
    served: ServeProcess
    endpoint: FakeEndpoint
    datasets_root: Path
    models_root: Path
    outside: Path

    def post(self, path: str, body: Any, **headers: str) -> Any:
        import httpx

        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(self.served.info["api_url"] + path, content=content, timeout=60,
                          headers={"authorization": f"Bearer {self.served.token}", **headers})


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    base = tmp_path_factory.mktemp("secured")
    datasets, models, outside = base / "datasets", base / "models", base / "outside"
    for folder in (datasets, models, outside, models / "good-model"):
        folder.mkdir()
    (outside / "secret.jsonl").write_text(json.dumps({"question": SECRET_CONTENT, "answer": "x"}) + "\n")
    (outside / "model").mkdir()
    (outside / "model" / "config.json").write_text(json.dumps({"note": SECRET_CONTENT}))
    (datasets / "good.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    (datasets / "link.jsonl").symlink_to(outside / "secret.jsonl")
    (models / "link-model").symlink_to(outside / "model")
    runner = base / "runner.sh"
    import sys

    runner.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "recording_runner.py"}" "$@"\n')
    runner.chmod(0o755)
    endpoint = _endpoint()
    data_dir = base / "data"
    data_dir.mkdir()
    env = serve_env(
        data_dir, "process",
        BUDEVAL_OPENCOMPASS_PYTHON=str(runner),
        BUDEVAL_CREDENTIALS=json.dumps({"team-a": [ENDPOINT_HOST]}),
        BUDEVAL_SECRET_TEAM_A_API_KEY=TEAM_A_KEY,
        BUDEVAL_SECRET_OTHER_TEAM_API_KEY=OTHER_KEY,
        BUDEVAL_ENDPOINT_ALLOWED_NETWORKS=f"{ENDPOINT_HOST}/32",
        BUDEVAL_DATASETS_ROOT=str(datasets),
        BUDEVAL_MODELS_ROOT=str(models),
        BUDEVAL_DOCS_ENABLED="false",
        BUDEVAL_METRICS_ACCESS="token",
        BUDEVAL_HTTP_READ_TIMEOUT_S="2",
    )
    served = ServeProcess(data_dir, env).start()
    try:
        served.wait_ready(timeout=180)
        yield Secured(served, endpoint, datasets, models, outside)
    finally:
        served.stop()
        endpoint.server.shutdown()
