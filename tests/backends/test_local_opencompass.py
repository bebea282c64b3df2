"""One real evaluation: SmolLM2-135M-Instruct on the bundled tiny_qa through LocalBackend and real OpenCompass."""

from __future__ import annotations

import csv
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from budeval.backends.base import RunSpec
from budeval.backends.local import LocalBackend, secret_env_name
from budeval.config import Settings
from budeval.engine.catalog import BUNDLED
from budeval.engine.render import render_config
from budeval.schemas.request import EvalRequest

pytestmark = [pytest.mark.opencompass, pytest.mark.slow]


def test_tiny_qa_with_the_real_model(opencompass_env: dict[str, str], tmp_path: Path) -> None:
    request = EvalRequest.model_validate(
        {
            "eval_id": "real-tiny-qa",
            "model": {
                "name": "smollm2-135m-instruct",
                "source": {"type": "huggingface", "path": opencompass_env["BUDEVAL_MODEL_PATH"], "mode": "chat"},
            },
            "datasets": ["tiny_qa"],
            "generation": {"max_out_len": 24, "batch_size": 8},
            # The default GPU request: on this CPU host the backend must still run it.
        }
    )
    settings = Settings(
        data_dir=tmp_path, opencompass_python=opencompass_env["BUDEVAL_OPENCOMPASS_PYTHON"], max_parallel_runs=1
    )
    backend = LocalBackend(settings)
    spec = RunSpec(
        eval_id=request.eval_id,
        run_id="r0",
        config_text=render_config(request, ["tiny_qa"]),
        model=request.model,
        datasets=["tiny_qa"],
        resources=request.resources,
    )
    backend.submit(spec)
    deadline = time.monotonic() + 900
    state = backend.get(spec.eval_id, spec.run_id)
    while not state.finished and time.monotonic() < deadline:
        time.sleep(2)
        state = backend.get(spec.eval_id, spec.run_id)
    assert state.phase == "succeeded", (state, (backend.work_dir("real-tiny-qa", "r0") / ".budeval/output.log"))
    summaries = list(backend.work_dir("real-tiny-qa", "r0").glob("*/summary/summary_*.csv"))
    assert len(summaries) == 1
    with summaries[0].open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["dataset", "version", "metric", "mode", "smollm2-135m-instruct"]
    assert rows[1][0] == "tiny_qa" and rows[1][2] == "accuracy"
    assert 0.0 <= float(rows[1][4]) <= 100.0
    assert list(backend.work_dir("real-tiny-qa", "r0").glob("*/predictions/smollm2-135m-instruct/tiny_qa.json"))


class _FakeOpenAI(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint answering tiny_qa correctly; records the Authorization headers it saw."""

    answers: dict[str, str] = {}
    auth_seen: list[str] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.auth_seen.append(self.headers.get("Authorization", ""))
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        answer = next((a for q, a in self.answers.items() if q in prompt), "unknown")
        reply = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_endpoint_model_gets_its_key_from_the_environment_only(
    opencompass_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [json.loads(line) for line in BUNDLED["tiny_qa"].path.read_text().splitlines()]
    _FakeOpenAI.answers = {r["question"]: r["answer"] for r in rows}
    _FakeOpenAI.auth_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    key = "sk-budeval-test-0123456789"
    monkeypatch.setenv(secret_env_name("llm-keys", "api-key"), key)
    try:
        request = EvalRequest.model_validate(
            {
                "eval_id": "real-endpoint",
                "model": {
                    "name": "served",
                    "source": {
                        "type": "openai",
                        "base_url": f"http://127.0.0.1:{server.server_address[1]}/v1/",
                        "model": "served-model",
                        "api_key_secret": {"name": "llm-keys", "key": "api-key"},
                        "tokenizer_path": opencompass_env["BUDEVAL_MODEL_PATH"],
                    },
                },
                "datasets": ["tiny_qa"],
                "resources": {"gpus": 0},
            }
        )
        text = render_config(request, ["tiny_qa"])
        assert key not in text
        backend = LocalBackend(
            Settings(data_dir=tmp_path, opencompass_python=opencompass_env["BUDEVAL_OPENCOMPASS_PYTHON"])
        )
        spec = RunSpec(
            eval_id=request.eval_id,
            run_id="r0",
            config_text=text,
            model=request.model,
            datasets=["tiny_qa"],
            resources=request.resources,
        )
        backend.submit(spec)
        deadline = time.monotonic() + 900
        state = backend.get(spec.eval_id, spec.run_id)
        while not state.finished and time.monotonic() < deadline:
            time.sleep(2)
            state = backend.get(spec.eval_id, spec.run_id)
    finally:
        server.shutdown()
    work = backend.work_dir("real-endpoint", "r0")
    assert state.phase == "succeeded", (state, work / ".budeval/output.log")
    assert _FakeOpenAI.auth_seen and set(_FakeOpenAI.auth_seen) == {f"Bearer {key}"}
    summary = next(work.glob("*/summary/summary_*.csv")).read_text().splitlines()
    assert summary[1].startswith("tiny_qa,") and summary[1].endswith(",100.00")  # every answer came from the server
    for path in work.rglob("*"):
        if path.is_file():
            assert key not in path.read_text(errors="replace"), path
