"""The embedded sidecar in a child process: the shape of daprd next to the app, with its own interpreter (and GIL).

On a machine with more than one core this is the faster embedded mode (``BUDEVAL_SIDECAR=process``): the sidecar's
gRPC, SQLite and delivery work no longer competes with the workflow worker for one interpreter lock (measured with
``scripts/bench_workflow.py``: ~30% more evaluations/s on two cores). The child dies with the process that started it
(Linux ``PR_SET_PDEATHSIG``, set by the child itself), so a killed service never leaves a sidecar behind that holds
the state file; the restarted service starts a new one on the same state and resumes everything, as in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from budeval.errors import SidecarUnavailableError

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); exit now if the parent is already gone."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's stop() is the only way out
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class SidecarProcess:
    """``python -m budeval.sidecar`` started, awaited until it listens, and stopped (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        state_path: Path,
        grpc_port: int = 0,
        http_port: int = 0,
        app_port: int | None = None,
        log: IO[bytes] | None = None,
        start_timeout: float = 60.0,
        app_token: str | None = None,
        read_timeout_s: float = 30.0,
        max_connections: int = 256,
        max_json_depth: int = 64,
        forget_bodies: tuple[str, ...] = (),
        stop_timeout: float = 15.0,
    ) -> None:
        """``start_timeout``: seconds the child has to report its ports; ``stop_timeout``: seconds it has to exit
        after SIGTERM before SIGKILL (the service passes its settings ``sidecar_start_timeout_s`` /
        ``sidecar_stop_timeout_s``)."""
        self.app_token = app_token
        self.stop_timeout = stop_timeout
        self.limits = ["--read-timeout", str(read_timeout_s), "--max-connections", str(max_connections),
                       "--max-json-depth", str(max_json_depth)]
        for topic in forget_bodies:
            self.limits += ["--forget-bodies", topic]
        self.state_path = state_path
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.app_port = app_port
        self.start_timeout = start_timeout
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> SidecarProcess:
        args = [sys.executable, "-m", "budeval.sidecar", "--state", str(self.state_path)]
        args += ["--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port)]
        args += ["--parent-pid", str(os.getpid())]
        if self.app_port is not None:
            args += ["--app-port", str(self.app_port)]
        args += self.limits
        if self.app_token is not None:  # on stdin: argv is visible to everyone, a child's environment to its user
            args.append("--app-token-stdin")
        # stdout carries the one JSON line with the ports; logs go to stderr (ours, or the given file).
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE if self.app_token is not None else None,
                                     stdout=subprocess.PIPE, stderr=self._log or None)
        if self.app_token is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(self.app_token.encode("utf-8") + b"\n")
            self.proc.stdin.close()
        ports = self._read_ports(self.proc)
        self.grpc_port, self.http_port = int(ports["grpc_port"]), int(ports["http_port"])
        return self

    def _read_ports(self, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        ready = threading.Event()
        sink = self._log or sys.stderr.buffer

        def pump() -> None:
            """Finds the ports line, then keeps the pipe drained (a full pipe would block the child)."""
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                if not ready.is_set():
                    try:
                        value = json.loads(raw)
                    except ValueError:
                        value = None
                    if isinstance(value, dict) and "grpc_port" in value:
                        found.update(value)
                        ready.set()
                        continue
                try:
                    sink.write(raw)
                    sink.flush()
                except (OSError, ValueError):  # our log closed while stopping: keep draining
                    pass
            ready.set()

        threading.Thread(target=pump, name="sidecar-stdout", daemon=True).start()
        ready.wait(self.start_timeout)
        if "grpc_port" not in found:
            self.stop()
            raise SidecarUnavailableError(
                f"the sidecar process did not report its ports within {self.start_timeout:.0f} s "
                f"(exit code {proc.poll()}); see its log"
            )
        return found

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds (default ``stop_timeout``)."""
        timeout = self.stop_timeout if timeout is None else timeout
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> SidecarProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
