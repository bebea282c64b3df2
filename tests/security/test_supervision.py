"""Issue 13, item 5 (part): the sidecar child is supervised. Killed under a running service, the service fails
``/healthz`` and exits non-zero (so that its supervisor restarts both), instead of answering 200 forever."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.service.serve_process import ServeProcess, serve_env


def test_a_dead_sidecar_child_stops_the_service_with_a_failure(tmp_path: Path) -> None:
    served = ServeProcess(tmp_path, serve_env(tmp_path, "process")).start()
    try:
        served.wait_ready(timeout=180)
        os.kill(int(served.info["sidecar_pid"]), signal.SIGKILL)
        code = served.wait_died()
        assert code != 0, served.tail()
        assert "sidecar process died" in served.tail()
    finally:
        served.stop()
