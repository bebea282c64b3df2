"""kill -9 of the whole process (sidecar + worker) during a timer and during an activity; the restart finishes once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dapr.ext.workflow as wf
import httpx

from tests.sidecar.app_stub import SubscriberApp
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]


def _wait(check: Callable[[], bool], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


class Proc:
    def __init__(self, *args: str) -> None:
        self.args = [sys.executable, "-m", "tests.sidecar.crash_process", *args]
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the sidecar may log to stdout first
            if line.strip() == "ready":
                # Keep draining, or a full pipe would block the process's logging.
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                return
        raise AssertionError(f"the process exited before it was ready: {self.proc.wait()}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill9()


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_kill9_during_timer_and_during_activity_completes_once(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    marks = tmp_path / "marks"
    proc = Proc(str(tmp_path / "state.db"), str(grpc_port), str(http_port), str(marks))
    proc.start()
    try:
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(grpc_port))
        client.schedule_new_workflow("crash_flow", instance_id="crash-1")
        _wait(lambda: "first" in _lines(marks))
        time.sleep(0.5)  # inside the 2 s durable timer
        proc.kill9()
        assert "slow-start" not in _lines(marks)

        proc.start()  # the timer fires after the restart, then the slow activity starts
        _wait(lambda: "slow-start" in _lines(marks))
        proc.kill9()  # in the middle of the activity: its work item was never completed
        assert "slow-end" not in _lines(marks)

        proc.start()
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(grpc_port))
        state = client.wait_for_workflow_completion("crash-1", timeout_in_seconds=60)
        assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED
        assert state.serialized_output == '["first", "slow", "final"]'
        lines = _lines(marks)
        assert lines.count("first") == 1 and lines.count("final") == 1
        assert lines.count("slow-start") == 2 and lines.count("slow-end") == 1  # re-delivered once, finished once
    finally:
        proc.stop()


def test_kill9_keeps_published_messages_until_delivered(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    state = str(tmp_path / "state.db")
    proc = Proc(state, str(grpc_port), str(http_port), str(tmp_path / "marks"))
    proc.start()
    try:
        answer = httpx.post(f"http://127.0.0.1:{http_port}/v1.0/publish/pubsub/requests", json={"n": 1})
        assert answer.status_code == 204
        proc.kill9()  # no app was known: nothing was delivered yet
        app = SubscriberApp(
            [{"pubsubname": "pubsub", "topic": "requests", "route": "/in"}], {"/in": [(200, {"status": "SUCCESS"})]}
        ).start()
        try:
            proc = Proc(state, str(grpc_port), str(http_port), str(tmp_path / "marks"), app.url)
            proc.start()
            _wait(lambda: len(app.on("/in")) == 1)
            assert app.on("/in")[0]["data"] == {"n": 1}
        finally:
            app.stop()
    finally:
        proc.stop()
