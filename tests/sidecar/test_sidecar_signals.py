"""``python -m budeval.sidecar`` (the chart's ``daprd`` container) stops on SIGTERM, run as PID 1 of its own PID
namespace like a container's process: the kernel drops a signal PID 1 has no handler for, so a SIGTERM that came
while the sidecar still imported gRPC and the Dapr SDK was lost and the pod waited its whole grace period.

Real processes, real signals (``unshare --pid --fork`` as root; a plain child otherwise, without PID 1 semantics).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dapr.ext.workflow as wf

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def as_pid1() -> list[str]:
    if os.geteuid() == 0 and shutil.which("unshare"):
        return ["unshare", "--pid", "--fork", "--kill-child"]
    return []


class Sidecar:
    """The sidecar process; ``pid`` is the Python process itself (PID 1 inside its namespace)."""

    def __init__(self, tmp: Path) -> None:
        self.out = tmp / "out"
        self.err = tmp / "err"
        self.grpc_port, self.http_port = free_port(), free_port()
        self.proc = subprocess.Popen(
            [*as_pid1(), sys.executable, "-m", "budeval.sidecar", f"--state={tmp / 'sidecar.db'}",
             f"--grpc-port={self.grpc_port}", f"--http-port={self.http_port}", "--app-port=9"],
            cwd=ROOT, stdout=open(self.out, "wb"), stderr=open(self.err, "wb"),  # noqa: SIM115
        )
        self.pid = wait_until(self._python_pid, timeout=30, what="the sidecar's Python process")

    def _python_pid(self) -> int | None:
        if not as_pid1():
            return self.proc.pid
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        text = children.read_text().split() if children.exists() else []
        return int(text[0]) if text else None

    def catches_sigterm(self) -> bool:
        status = Path(f"/proc/{self.pid}/status").read_text()
        caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
        return bool(int(caught.split()[1], 16) & SIGTERM_BIT)

    def gone(self) -> bool:
        return self.proc.poll() is not None and not Path(f"/proc/{self.pid}").exists()

    def kill(self) -> None:
        if self.proc.poll() is None:
            for pid in (self.pid, self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def test_sigterm_while_the_sidecar_is_still_starting_stops_it(tmp_path: Path) -> None:
    sidecar = Sidecar(tmp_path)
    try:
        # The handler is in place before the heavy imports: catch the first moment it is, and signal then.
        deadline = time.monotonic() + 30
        while not sidecar.catches_sigterm():
            assert time.monotonic() < deadline and sidecar.proc.poll() is None, sidecar.err.read_text()[-2000:]
            time.sleep(0.002)
        os.kill(sidecar.pid, signal.SIGTERM)
        wait_until(sidecar.gone, timeout=60, what="the sidecar to exit after SIGTERM during its start")
        assert sidecar.proc.returncode == 0, sidecar.err.read_text()[-2000:]
        # It stopped before it served: the ports line (printed once it listens) never came.
        assert sidecar.out.read_text() == "", sidecar.out.read_text()
        assert "stopped before it started" in sidecar.err.read_text()
    finally:
        sidecar.kill()


def test_sigterm_stops_a_serving_sidecar_while_a_client_waits_on_it(tmp_path: Path) -> None:
    sidecar = Sidecar(tmp_path)
    try:
        wait_until(lambda: sidecar.out.read_text().strip(), timeout=60, what="the sidecar to listen")
        ports = json.loads(sidecar.out.read_text().splitlines()[0])
        assert ports["grpc_port"] == sidecar.grpc_port
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
        instance = client.schedule_new_workflow("never_registered", instance_id="wait-me")  # no worker: it never ends

        def wait() -> None:
            with contextlib.suppress(Exception):  # the sidecar goes away under the call: expected here
                client.wait_for_workflow_completion(instance, timeout_in_seconds=600)

        waiting = threading.Thread(target=wait, daemon=True)
        waiting.start()
        time.sleep(0.5)  # the wait is now a gRPC handler thread blocked in the sidecar
        os.kill(sidecar.pid, signal.SIGTERM)
        wait_until(sidecar.gone, timeout=60, what="the serving sidecar to exit after SIGTERM")
        assert sidecar.proc.returncode == 0, sidecar.err.read_text()[-2000:]
        assert "embedded sidecar stopped" in sidecar.err.read_text()
    finally:
        sidecar.kill()


def test_sigint_stops_it_too(tmp_path: Path) -> None:
    sidecar = Sidecar(tmp_path)
    try:
        wait_until(lambda: sidecar.out.read_text().strip(), timeout=60, what="the sidecar to listen")
        os.kill(sidecar.pid, signal.SIGINT)
        wait_until(sidecar.gone, timeout=60, what="the sidecar to exit after SIGINT")
        assert sidecar.proc.returncode == 0
    finally:
        sidecar.kill()


def test_the_app_container_stops_on_sigterm_while_it_waits_for_its_sidecar(tmp_path: Path) -> None:
    """The chart's other container, ``budeval serve`` (PID 1 too): with daprd not up yet it retries the workflow
    worker (the SDK retries its connection for as long as it takes); a SIGTERM then must end it, not be dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "BUDEVAL_"))}
    env.update(DAPR_GRPC_PORT=str(free_port()), DAPR_HTTP_PORT=str(free_port()), BUDEVAL_PORT=str(free_port()),
               BUDEVAL_DATA_DIR=str(tmp_path / "data"), BUDEVAL_API_TOKEN="t" * 40, APP_API_TOKEN="a" * 40,
               BUDEVAL_DAPR_START_ATTEMPTS="1000", BUDEVAL_DAPR_START_RETRY_S="1")
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([*as_pid1(), sys.executable, "-m", "budeval.cli.main", "serve"], env=env, cwd=ROOT,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    app = Sidecar.__new__(Sidecar)
    app.proc = proc
    try:
        app.pid = wait_until(app._python_pid, timeout=30, what="the app's Python process")
        wait_until(lambda: "Connection failed, retrying" in log.read_text() or proc.poll() is not None,
                   timeout=120, what="serve to wait for its sidecar")
        assert app.catches_sigterm(), log.read_text()[-2000:]
        os.kill(app.pid, signal.SIGTERM)
        wait_until(app.gone, timeout=60, what="serve to exit after SIGTERM while it waited for daprd")
        assert proc.returncode == 130, log.read_text()[-2000:]  # the CLI's "interrupted"
        assert "budeval: error: interrupted" in log.read_text()
    finally:
        app.kill()
