"""A real evaluation through the topic shows its progress while it runs, and its service log is JSON lines.

Real parts throughout: `budeval serve` (embedded sidecar, chDB, folder archive, local backend) runs real OpenCompass
0.5.4 with the real SmolLM2-135M-Instruct on `tiny_qa` (5 questions, batches of 2: three steps of the inferencer's
progress bar). `budeval submit --wait` publishes the request on the request topic and follows the events topic;
`budeval status` is read while it runs. Proven: live `progress` events on the events topic (at least one with
examples done < total), `budeval status` and `GET /evals/{id}` of the running evaluation with its progress, and
every line of the service's log one JSON object, none repeated.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.serve_process import ROOT, ServeProcess, serve_env

pytestmark = [pytest.mark.slow, pytest.mark.opencompass, pytest.mark.timeout(2400)]  # minutes per batch when loaded

EVAL_ID = "live-progress-1"


@pytest.fixture
def service(tmp_path: Path, opencompass_env: dict[str, str]) -> Iterator[ServeProcess]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = serve_env(
        data_dir,
        "process",
        BUDEVAL_OPENCOMPASS_PYTHON=opencompass_env["BUDEVAL_OPENCOMPASS_PYTHON"],
        BUDEVAL_MODELS_ROOT=str(Path(opencompass_env["BUDEVAL_MODEL_PATH"]).parent),
        BUDEVAL_PROGRESS_INTERVAL_S="0.5",
    )
    svc = ServeProcess(data_dir, env)
    try:
        yield svc.start().wait_ready()
    finally:
        svc.stop()


def _request(model_path: str) -> dict[str, Any]:
    return {
        "eval_id": EVAL_ID,
        "model": {"name": "smollm2-135m-instruct", "source": {"type": "huggingface", "path": model_path,
                                                               "mode": "chat"}},
        "datasets": ["tiny_qa"],
        "generation": {"max_out_len": 16, "batch_size": 2},
        "timeout_s": 1800,
    }


def test_progress_while_a_real_run_goes_and_json_logs(
    service: ServeProcess, opencompass_env: dict[str, str], tmp_path: Path
) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps(_request(opencompass_env["BUDEVAL_MODEL_PATH"])))
    submit = subprocess.Popen(
        [sys.executable, "-m", "budeval.cli.main", "submit", str(request), "--wait", "--timeout", "2000"],
        env=service.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    seen: list[tuple[str, dict[str, Any]]] = []  # (status text, GET /evals body) while the evaluation runs

    def watch() -> None:
        while submit.poll() is None:
            body = service.api("GET", f"/evals/{EVAL_ID}")
            progress = body.json().get("progress") if body.status_code == 200 else None
            if progress and any(r["tasks"] for r in progress["runs"]):
                seen.append((service.cli("status", EVAL_ID).stdout, body.json()))
            threading.Event().wait(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = submit.communicate(timeout=2200)
    watcher.join(timeout=60)
    assert submit.returncode == 0, (out[-2000:], err[-2000:], service.tail())

    # progress events on the events topic while it ran, one with examples done < total
    live = [e["data"] for e in service.events(EVAL_ID) if e["type"].endswith(".progress") and e["data"].get("live")]
    assert live, [e["type"] for e in service.events(EVAL_ID)]
    partial = [d for d in live if d["total"] is not None and d["done"] < d["total"]]
    assert partial, live
    assert all(d["eta_s"] is None or d["eta_s"] >= 0 for d in live)
    assert max(d["done"] for d in live) <= 5
    assert "examples" in err  # submit --wait printed them (budeval/cli/progress_view.py)

    # budeval status and GET /evals/{id} of the running evaluation carried its progress
    assert seen, "the evaluation was never seen running with progress"
    status_text, body = seen[0]
    assert body["status"] in ("pending", "running") and "progress:" in status_text, status_text
    assert "tiny_qa (smollm2-135m-instruct)" in status_text
    (tmp_path / "status-while-running.txt").write_text("\n".join(text for text, _ in seen))
    print("\n--- budeval status while running (first and last seen) ---\n" + seen[0][0] + "...\n" + seen[-1][0])

    # after the run: no progress on a finished evaluation
    assert service.api("GET", f"/evals/{EVAL_ID}").json()["progress"] is None

    service.stop()
    lines = service.log.read_text(encoding="utf-8").splitlines()
    not_json = []
    for line in lines:
        try:
            if not isinstance(json.loads(line), dict):
                not_json.append(line)
        except ValueError:
            not_json.append(line)
    assert not not_json, not_json[:20]
    repeated = {line for line in lines if lines.count(line) > 1}
    assert not repeated, sorted(repeated)[:10]
    records = [json.loads(line) for line in lines]
    assert {"WorkflowRuntime", "durabletask-worker", "budeval"} <= {r.get("logger") for r in records}
    assert any(r.get("eval_id") == EVAL_ID and r.get("run_id") == "r0" for r in records)
    token = service.token
    assert all(token not in line for line in lines)
