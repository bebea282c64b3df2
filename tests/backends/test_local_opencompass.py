"""One real evaluation: SmolLM2-135M-Instruct on the bundled tiny_qa through LocalBackend and real OpenCompass."""

from __future__ import annotations

import csv
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from budeval.backends.base import RunSpec, RunState
from budeval.backends.local import LocalBackend
from budeval.backends.runenv import secret_env_name
from budeval.buildinfo import build_info
from budeval.config import Settings
from budeval.engine.catalog import BUNDLED
from budeval.engine.render import config_hash, render_config
from budeval.engine.results import parse_run
from budeval.events.publisher import MemoryPublisher
from budeval.schemas.request import EvalRequest
from budeval.storage.factory import open_archive, open_store
from budeval.workflow.activities import Deps, EvalActivities
from budeval.workflow.models import Collected, CollectInput, EvaluationResult, FinalizeInput, RunOutcome

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
    submitted_at = datetime.now(UTC).isoformat()
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
    _provenance_of_the_real_run(request, settings, backend, spec, state, submitted_at)


def _provenance_of_the_real_run(
    request: EvalRequest, settings: Settings, backend: LocalBackend, spec: RunSpec, state: RunState, submitted_at: str
) -> None:
    """The real run's folder through the real collect and finalize steps (chDB, folder archive): the provenance the
    row and the ``completed`` event carry, as the workflow drives them (its run clock given here)."""
    finished_at = datetime.now(UTC).isoformat()
    store = open_store(settings.resolved_store_dsn())
    store.migrate()
    publisher = MemoryPublisher()
    deps = Deps(settings=settings, backend=backend, store=store, archive=open_archive(settings.resolved_archive_url()),
                publisher=publisher, parse=parse_run)
    acts = EvalActivities(deps)
    try:
        validated = acts.validate_request(request.model_dump(mode="json"))
        acts.begin_evaluation(validated, datetime.fromisoformat(submitted_at))
        collected = Collected.model_validate(
            acts.collect_run(None, CollectInput(eval_id=spec.eval_id, run_id="r0", datasets=["tiny_qa"],
                                                state=state).model_dump(mode="json"))
        )
        run = RunOutcome(run_id="r0", datasets=["tiny_qa"], state=state, metrics=collected.metrics,
                         statuses=collected.statuses, environment=collected.environment,
                         opencompass_version=collected.opencompass_version,
                         timings={"submitted_at": submitted_at, "finished_at": finished_at,
                                  "collected_at": datetime.now(UTC).isoformat()})
        result = EvaluationResult(eval_id=spec.eval_id, outcome="completed",
                                  scores=[m.model_dump(mode="json") for m in collected.metrics])
        acts.finalize_evaluation(None, FinalizeInput(
            validated=validated, outcome="completed", runs=[run], archive_url=None, reason=None,
            started_at=submitted_at, finished_at=datetime.now(UTC).isoformat(),
            config_hashes={"r0": config_hash(spec.config_text)}, result=result).model_dump(mode="json"))
        record = store.get_evaluation(spec.eval_id)
    finally:
        store.close()
    assert record is not None and record.status == "completed"
    env = record.provenance["environments"]["r0"]
    assert env["opencompass"] == "0.5.4" and env["torch"].startswith("2.13.0") and env["transformers"]
    assert env["python"].startswith("3.11") and env["hostname"]
    assert env["gpu_count"] == 0 and env["cuda_available"] is False
    assert record.engine_version == "0.5.4" and record.gpu_type == "" and record.gpu_count == 0
    assert record.model_commit.startswith("sha256:") and record.params_hash
    assert record.provenance["config_hashes"] == {"r0": config_hash(spec.config_text)}
    assert record.provenance["budeval_commit"] == build_info()["commit"] and build_info()["stamped"]
    phases = record.provenance["timings"]["runs"]["r0"]
    assert phases["run_s"] > 0 and phases["queued_s"] >= 0 and phases["collect_s"] >= 0
    (completed,) = [e for _, e in publisher.events if e.type.endswith(".completed")]
    summary = completed.data["provenance"]
    assert summary["engine_version"] == "0.5.4" and summary["hosts"] == [env["hostname"]]
    assert summary["params_hash"] == record.params_hash and summary["model_commit"] == record.model_commit


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
