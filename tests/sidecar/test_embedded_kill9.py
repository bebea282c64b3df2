"""kill -9 of a whole process (embedded sidecar + worker) during a timer and during an activity: after each restart
the workflow resumes from SQLite and completes exactly once. Also: kill -9 of the worker alone, and a published
message survives kill -9. The one sidecar kill -9 suite: it absorbed the former test_sdk_kill9.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dapr.ext.workflow as wf
import httpx
import pytest

from tests.sidecar.app_stub import SubscriberApp
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


class Proc:
    def __init__(self, state: Path, marks: Path) -> None:
        self.state, self.marks = state, marks
        self.grpc_port, self.http_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        (self.marks / "ready").unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sidecar.embedded_proc", str(self.state), str(self.grpc_port),
             str(self.http_port), str(self.marks), *extra],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.marks / "proc.log", "ab"),  # noqa: SIM115
        )
        wait_until(lambda: (self.marks / "ready").exists() or self.proc.poll() is not None,  # type: ignore[union-attr]
                   timeout=60, what="the process to start")
        assert self.proc.poll() is None, (self.marks / "proc.log").read_text()[-3000:]

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def marks_list(self) -> list[str]:
        path = self.marks / "marks"
        return path.read_text().split() if path.exists() else []


@pytest.fixture()
def proc(tmp_path: Path) -> Iterator[Proc]:
    p = Proc(tmp_path / "state.db", tmp_path)
    yield p
    if p.proc is not None and p.proc.poll() is None:
        p.kill9()


def _history_kinds(client: wf.DaprWorkflowClient, iid: str) -> list[str]:
    return [e.event_type.name for e in client.get_workflow_history(iid)]


def test_kill9_during_timer_and_during_activity_completes_once(proc: Proc) -> None:
    proc.start()
    client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(proc.grpc_port))
    client.schedule_new_workflow("durable", instance_id="k9")
    wait_until(lambda: "first" in proc.marks_list(), what="the first activity")
    wait_until(lambda: "TIMER_CREATED" in _history_kinds(client, "k9"),
               what="the timer to be created")
    client.close()
    proc.kill9()  # during the 3 s durable timer
    assert "slow-start" not in proc.marks_list()  # the kill came before the timer fired

    proc.start()
    client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(proc.grpc_port))
    wait_until(lambda: "slow-start" in proc.marks_list(), timeout=60, what="the timer to fire after restart")
    client.close()
    proc.kill9()  # during the 4 s activity
    assert "slow-end" not in proc.marks_list()  # its work item was never completed

    proc.start()
    client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(proc.grpc_port))
    state = client.wait_for_workflow_completion("k9", timeout_in_seconds=60)
    assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == ["first", "slow", "last"]
    marks = proc.marks_list()
    assert marks.count("first") == 1  # committed before the first kill: never re-run
    assert marks.count("slow-start") == 2 and marks.count("slow-end") == 1  # killed once mid-activity, re-delivered
    assert marks.count("last") == 1
    client.close()


def test_kill9_of_the_worker_alone_redelivers_its_work_items(tmp_path: Path) -> None:
    """The sidecar stays up; the worker process dies mid-activity; its dropped stream's items go to the next one."""
    from budeval.sidecar.embedded import EmbeddedSidecar

    with EmbeddedSidecar(tmp_path / "state.db") as sidecar:
        worker = Proc(Path("-"), tmp_path)
        worker.grpc_port, worker.http_port = sidecar.grpc_port, sidecar.http_port
        worker.start()
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
        try:
            client.schedule_new_workflow("durable", instance_id="w9")
            wait_until(lambda: "slow-start" in worker.marks_list(), timeout=60, what="the slow activity")
            worker.kill9()
            worker.start()
            state = client.wait_for_workflow_completion("w9", timeout_in_seconds=60)
            assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED
            marks = worker.marks_list()
            assert marks.count("first") == 1 and marks.count("last") == 1
            assert marks.count("slow-start") == 2 and marks.count("slow-end") == 1
        finally:
            client.close()
            if worker.proc is not None and worker.proc.poll() is None:
                worker.kill9()


def test_published_message_survives_kill9(proc: Proc) -> None:
    app = SubscriberApp([{"pubsubname": "ps", "topic": "t", "route": "/t"}], {"/t": [(200, {"status": "SUCCESS"})]})
    app.port = free_port()
    # the app is down at first: the sidecar accepts the message, persists it, and cannot deliver yet
    proc.start("--app-port", str(app.port))
    answer = httpx.post(f"http://127.0.0.1:{proc.http_port}/v1.0/publish/ps/t", content=b'{"x": 1}',
                        headers={"content-type": "application/json"}, timeout=10)
    assert answer.status_code == 204
    proc.kill9()
    app.start()
    try:
        proc.start("--app-port", str(app.port))
        wait_until(lambda: app.count("/t") == 1, timeout=30, what="delivery after kill -9 and restart")
        assert app.on("/t")[0]["data"] == {"x": 1}
    finally:
        app.stop()
