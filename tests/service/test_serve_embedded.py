"""The real `budeval serve` (embedded sidecar, chDB store, folder archive, local backend) driven like a user would.

Requests go through the pub/sub topic with `budeval submit` (the embedded sidecar's publish API, delivered to the
app's subscription route); `status`/`cancel` use the HTTP API. The local backend runs tests/service/
fake_opencompass.sh instead of OpenCompass: it copies a real OpenCompass output folder (tests/fixtures), so the
parser, store and archive see real files. The process is stopped with SIGTERM at the end and must exit cleanly.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.corpus import generate
from tests.service.serve_process import ServeProcess, serve_env
from tests.support import wait_until


def request(eval_id: str, path: str = "/models/m", **extra: Any) -> dict[str, Any]:
    return {
        "eval_id": eval_id,
        "model": {"name": "m", "source": {"type": "huggingface", "path": path}},
        "datasets": ["tiny_qa"],
        "timeout_s": 600,
        **extra,
    }


def _start(data_dir: Path, sidecar: str) -> ServeProcess:
    served = ServeProcess(data_dir, serve_env(data_dir, sidecar)).start()
    try:
        return served.wait_ready(timeout=120)
    except BaseException:
        served.stop()
        raise


# Every test below runs against both embedded shapes: the sidecar in the service's process, and in its own child.
@pytest.fixture(scope="module", params=["embedded", "process"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    s = _start(tmp_path_factory.mktemp(f"serve-{request.param}"), request.param)
    try:
        yield s
    finally:
        s.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sidecar_process_dies_with_a_killed_service_and_a_restart_resumes_on_its_state(tmp_path: Path) -> None:
    first = _start(tmp_path, "process")
    try:
        sidecar_pid = first.info["sidecar_pid"]
        assert isinstance(sidecar_pid, int) and sidecar_pid != first.info["pid"] and _alive(sidecar_pid)
        published = first.cli("submit", "-", stdin=json.dumps(request("proc-1", path="/models/budeval-test-sleep")))
        assert published.returncode == 0, published.stderr
        pid_file = tmp_path / "results" / "proc-1" / "r0" / ".budeval" / "pid"
        wait_until(pid_file.is_file, timeout=60, what="the run to start")
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        assert first.wait_died() == -signal.SIGKILL
        wait_until(lambda: not _alive(sidecar_pid), timeout=30, what="the sidecar child to die with the service")
    finally:
        first.stop()
    second = _start(tmp_path, "process")  # same data dir: same sidecar.db, the workflow is still there
    try:
        body = second.api("GET", "/evals/proc-1").json()
        assert body["workflow"]["status"] == "RUNNING", body
        assert second.cli("cancel", "proc-1").returncode == 0
    finally:
        second.stop()


def test_submit_through_the_topic_completes_with_scores(served: ServeProcess, tmp_path: Path) -> None:
    file = tmp_path / "req.json"
    file.write_text(json.dumps(request("e2e-1")))
    done = served.cli("submit", str(file), "--wait", "--timeout", "150")
    assert done.returncode == 0, done.stdout + done.stderr + served.log.read_text()[-4000:]
    assert "e2e-1: completed" in done.stdout
    # The provenance summary: where the run ran (captured by the run itself) and how long each phase took.
    assert f"ran on: {socket.gethostname()} (no GPU)" in done.stdout, done.stdout
    assert re.search(r"run r0: config [0-9a-f]{16}; queued [\d.]+s, run [\d.]+s, collect [\d.]+s", done.stdout)
    status = served.cli("status", "e2e-1", "--json")
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["status"] == "completed" and body["workflow"]["status"] == "COMPLETED"
    assert body["scores"] and body["evaluation"]["eval_id"] == "e2e-1"
    results = served.api("GET", "/evals/e2e-1/results").json()
    assert results["scores"]
    kinds = [e["type"].rsplit(".", 1)[-1] for e in served.events() if (e.get("data") or {}).get("eval_id") == "e2e-1"]
    assert kinds.count("started") == 1 and kinds.count("completed") == 1
    metrics = httpx.get(served.info["api_url"] + "/metrics", timeout=10).text
    assert 'budeval_evaluations_total{status="completed"} 1.0' in metrics
    assert "budeval_extraction_duration_seconds_count" in metrics


def test_serve_prints_the_ui_address_and_serves_the_ui(served: ServeProcess) -> None:
    ui_url = served.info["api_url"] + "/ui/"
    assert served.info["ui_url"] == ui_url
    log = served.log.read_text(errors="replace")
    assert f"ui={ui_url}" in log or f'"ui": "{ui_url}"' in log
    login = httpx.get(ui_url, follow_redirects=True, timeout=10)  # no session: the login form
    assert login.status_code == 200 and 'name="token"' in login.text


def test_same_request_again_is_one_workflow(served: ServeProcess) -> None:
    again = served.cli("submit", "-", "--wait", "--timeout", "60", stdin=json.dumps(request("e2e-1")))
    assert again.returncode == 0, again.stdout + again.stderr
    kinds = [e["type"] for e in served.events() if (e.get("data") or {}).get("eval_id") == "e2e-1"]
    assert sum(k.endswith(".started") for k in kinds) == 1


def test_malformed_request_through_the_topic_is_rejected(served: ServeProcess) -> None:
    bad = served.cli("submit", "-", "--wait", "--timeout", "60", stdin=json.dumps(request("Bad_Id")))
    assert bad.returncode == 1
    assert "rejected" in bad.stdout and "eval_id" in bad.stdout
    unknown = served.cli("submit", "-", "--wait", "--timeout", "60",
                         stdin=json.dumps({**request("e2e-unknown"), "datasets": ["no_such_set"]}))
    assert unknown.returncode == 1 and "no_such_set" in unknown.stdout
    assert served.api("GET", "/evals/e2e-unknown").status_code == 404  # no workflow was started


def test_cancel_a_running_evaluation(served: ServeProcess) -> None:
    published = served.cli("submit", "-", stdin=json.dumps(request("e2e-cancel", path="/models/budeval-test-sleep")))
    assert published.returncode == 0, published.stderr
    pid_file = served.data_dir / "results" / "e2e-cancel" / "r0" / ".budeval" / "pid"
    wait_until(pid_file.is_file, timeout=60, what="the run to start")
    cancelled = served.cli("cancel", "e2e-cancel")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == "e2e-cancel: cancelled", cancelled.stdout
    # The workflow cancelled itself (stopped its run, wrote the row, published): it ends COMPLETED, not terminated.
    wait_until(lambda: served.api("GET", "/evals/e2e-cancel").json()["workflow"]["status"] == "COMPLETED",
               timeout=60, what="the workflow to end")
    body = served.api("GET", "/evals/e2e-cancel").json()
    assert body["status"] == "cancelled" and body["workflow"]["output"]["outcome"] == "cancelled", body
    assert body["evaluation"]["status"] == "cancelled"
    events = [e for e in served.events() if (e.get("data") or {}).get("eval_id") == "e2e-cancel"]
    assert [e["type"].rsplit(".", 1)[-1] for e in events].count("cancelled") == 1
    pid = int(pid_file.read_text().split()[0])
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
               timeout=30, what="the run's process to end")


def test_corpus_sample_through_the_sidecar_starts_nothing(served: ServeProcess) -> None:
    cases = [c for c in generate() if c.body.startswith(b'{"specversion"')][::10]
    publish = f"http://127.0.0.1:{served.info['dapr_http_port']}/v1.0/publish/budeval-pubsub/budeval.requests"
    ids = []
    for case in cases:
        ids.append(json.loads(case.body)["id"])
        answer = httpx.post(publish, content=case.body, headers={"content-type": "application/cloudevents+json"},
                            timeout=30)
        assert answer.status_code in (200, 204), answer.text

    def all_rejected() -> bool:
        seen = {(e.get("data") or {}).get("request_id") for e in served.events() if e["type"].endswith(".rejected")}
        return set(ids) <= seen

    wait_until(all_rejected, timeout=120, what="a rejected event for every case")
    assert httpx.get(served.info["api_url"] + "/healthz", timeout=10).status_code == 200
    runs = {p.name for p in (served.data_dir / "results").iterdir()}
    assert runs <= {"e2e-1", "e2e-cancel"}, runs  # no corpus case reached the backend
    for case in cases:
        if case.eval_id is not None:
            assert served.api("GET", f"/evals/{case.eval_id}").status_code == 404, case.name


def test_sigterm_stops_cleanly(served: ServeProcess) -> None:
    assert served.proc is not None
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=90) == 0, served.log.read_text()[-3000:]
    assert not (served.data_dir / "serve.json").exists()
    time.sleep(0)  # the module fixture sees the process gone and does nothing more
