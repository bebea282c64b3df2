"""End to end against a REAL OpenAI-compatible server: ``transformers serve`` (scripts/openai_server.sh) serving the
main job's model on loopback, OpenCompass's API model (budeval's usage-recording ``OpenAISDK``) calling it, the
request submitted through the pub/sub topic to the real ``budeval serve`` (embedded sidecar, chDB, folder archive,
local backend).

- ``light`` through the topic: scores, predictions and usage in ClickHouse, usage equal to the requests the server
  counted, shown by ``GET /evals/{id}``, ``budeval status`` and ``budeval results``;
- the server killed mid-run: the run of the dataset being inferred fails with ``endpoint_unavailable``, the
  evaluation is ``partial``, the dataset finished before keeps its scores and predictions, the interrupted one its
  checkpoint of predictions made before the kill (in the run folder and the archive).

Runtime (2-core machine shared with other sessions): the server ~40 s to start, an OpenCompass run ~1 min, a request
1-3 s; ~3 min for the first test, ~3 min for the second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OpenAIServer, openai_server_script, start_openai_server
from tests.service.serve_process import ServeProcess, serve_env
from tests.support import wait_until

pytestmark = [pytest.mark.opencompass, pytest.mark.slow]


def _served(data_dir: Path, opencompass_env: dict[str, str], **extra: str) -> ServeProcess:
    model = Path(opencompass_env["BUDEVAL_MODEL_PATH"])
    data_dir.mkdir(parents=True, exist_ok=True)
    env = serve_env(
        data_dir,
        "embedded",
        BUDEVAL_OPENCOMPASS_PYTHON=opencompass_env["BUDEVAL_OPENCOMPASS_PYTHON"],
        BUDEVAL_MODELS_ROOT=str(model.parent),  # the tokenizer OpenCompass counts prompt tokens with
        BUDEVAL_ENDPOINT_ALLOWED_NETWORKS="127.0.0.0/8",  # the operator allows the model server on this machine
        **extra,
    )
    return ServeProcess(data_dir, env).start().wait_ready(timeout=180)


def _request(eval_id: str, server: OpenAIServer, tokenizer: str, **extra: Any) -> dict[str, Any]:
    return {
        "eval_id": eval_id,
        "model": {"name": "smollm2-endpoint",
                  "source": {"type": "openai", "base_url": server.base_url, "model": server.model,
                             "tokenizer_path": tokenizer}},
        "suite": "light",
        "generation": {"max_out_len": 24, "batch_size": 4},
        "timeout_s": 1800,
        "force": True,
        **extra,
    }


def _submit(served: ServeProcess, request: dict[str, Any], tmp_path: Path) -> subprocess.Popen[str]:
    file = tmp_path / f"{request['eval_id']}.json"
    file.write_text(json.dumps(request))
    command = [sys.executable, "-m", "budeval.cli.main", "submit", str(file), "--wait", "--timeout", "1500"]
    return subprocess.Popen(command, env=served.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def served(opencompass_env: dict[str, str], tmp_path: Path) -> Iterator[ServeProcess]:
    process = _served(tmp_path / "data", opencompass_env, BUDEVAL_MAX_PARALLEL_RUNS="2")
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.timeout(1500)
def test_light_through_the_topic_against_the_real_server(
    served: ServeProcess, openai_server: OpenAIServer, opencompass_env: dict[str, str], tmp_path: Path
) -> None:
    before = openai_server.requests()
    request = _request("endpoint-light", openai_server, opencompass_env["BUDEVAL_MODEL_PATH"])
    proc = _submit(served, request, tmp_path)
    out, err = proc.communicate(timeout=1600)
    assert proc.returncode == 0, out + err + served.tail()
    assert "endpoint-light: completed" in out, out

    body = served.api("GET", "/evals/endpoint-light").json()
    assert body["status"] == "completed"
    scores = {(s["dataset"], s["metric"]): s["score"] for s in body["scores"]}
    assert set(scores) == {("tiny_qa", "accuracy"), ("tiny_mcq", "accuracy")}
    assert all(0 <= v <= 100 for v in scores.values())
    assert body["evaluation"]["gpu_count"] == 0
    # every example was one request the server answered, each reported its tokens, and budeval counted them all
    served_requests = openai_server.requests() - before
    assert served_requests == 9
    usage = body["usage"]
    assert set(usage["runs"]) == {"r0", "r1"}
    total = usage["total"]
    assert (total["requests"], total["failed_requests"]) == (9, 0)
    assert total["prompt_tokens"] > 9 * 10 and 9 <= total["completion_tokens"] <= 9 * 24
    assert total["total_tokens"] == total["prompt_tokens"] + total["completion_tokens"]
    status = served.cli("status", "endpoint-light")
    assert status.returncode == 0 and "usage: 9 requests (0 failed), tokens: prompt" in status.stdout, status.stderr

    served.stop()  # chDB: one process per data directory; the CLI reads the same store afterwards
    results = served.cli("results", "endpoint-light", "--examples", "5", "--json")
    assert results.returncode == 0, results.stderr
    examples = json.loads(results.stdout)["examples"]
    assert len(examples) == 9 and all(e["prediction"].strip() for e in examples), examples
    text = served.cli("results", "endpoint-light")
    assert f"usage: 9 requests (0 failed), tokens: prompt {total['prompt_tokens']}" in text.stdout, text.stderr


@pytest.mark.timeout(1500)
def test_server_killed_mid_run_fails_that_run_as_endpoint_unavailable_and_keeps_the_rest(
    opencompass_env: dict[str, str], tmp_path: Path
) -> None:
    server = start_openai_server(tmp_path / "openai")
    served: ServeProcess | None = None
    try:
        # one run at a time, one prompt per request batch, no retries: a fast, clear failure once the server is gone
        # (refused connections fail at once; the timeout only has to outlast a slow answer on a loaded machine)
        served = _served(tmp_path / "data", opencompass_env, BUDEVAL_MAX_PARALLEL_RUNS="1",
                         BUDEVAL_ENDPOINT_RETRIES="0", BUDEVAL_ENDPOINT_TIMEOUT_S="900")
        request = _request("endpoint-killed", server, opencompass_env["BUDEVAL_MODEL_PATH"],
                           generation={"max_out_len": 16, "batch_size": 1})
        proc = _submit(served, request, tmp_path)
        # r0 (tiny_qa, 5 examples) finishes, then two of r1's (tiny_mcq) prompts are answered: kill the server
        wait_until(lambda: server.requests() >= 7, timeout=900, interval=0.2, what="7 requests at the server")
        os.kill(server.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=900)
        assert proc.returncode != 0 and "endpoint-killed: partial" in out, out + err + served.tail()

        body = served.api("GET", "/evals/endpoint-killed").json()
        assert body["status"] == "partial"
        (failure,) = body["failures"]
        assert failure["run_id"] == "r1" and failure["reason_class"] == "endpoint_unavailable", failure
        assert "Calling OpenAI API failed" in failure["log_excerpt"]
        assert [(s["run_id"], s["dataset"]) for s in body["scores"]] == [("r0", "tiny_qa")]
        assert body["usage"]["runs"]["r0"]["requests"] == 5  # the failed run was not collected: no usage row
        # what r1 inferred before the kill is kept: OpenCompass's checkpoint of predictions, in the run folder
        work = tmp_path / "data" / "results" / "endpoint-killed" / "r1"
        (checkpoint,) = work.glob("*/predictions/smollm2-endpoint/tmp_tiny_mcq.jsonl")
        assert len(checkpoint.read_text().splitlines()) >= 2
        usage_lines = [json.loads(x) for f in (work / ".budeval" / "usage").glob("*.jsonl")
                       for x in f.read_text().splitlines()]
        assert sum(1 for x in usage_lines if x["ok"]) >= 2 and any(not x["ok"] for x in usage_lines)
        archived = list((tmp_path / "data" / "archive").rglob("tmp_tiny_mcq.jsonl"))
        assert archived, "the interrupted run's checkpoint reaches the archive"
    finally:
        if served is not None:
            served.stop()
        openai_server_script(server.state, "stop", timeout=120)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{server.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
