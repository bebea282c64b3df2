"""scripts/kube/apiserver.sh's bookkeeping of its processes, without starting a server (the pid files name stand-in
processes of this test). Needs the cached binaries (the script builds otherwise), like every apiserver test.

* start while the apiserver (or etcd) of the same state folder already runs on another port (another
  BUDEVAL_KUBE_PORT or BUDEVAL_ETCD_PORT): a clear error at once, not 60 s of /readyz on a port nothing listens on
  and "not ready";
* a PID file whose number now belongs to another process (a copied or restored /tmp, a reboot, a reused PID): not
  taken for a running server, and never signalled by ``stop`` (scripts/kube/pids.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "kube" / "apiserver.sh"


def _script(state: Path, *args: str, port: str = "29200") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BUDEVAL_KUBE_STATE": str(state), "BUDEVAL_KUBE_PORT": port, "BUDEVAL_ETCD_PORT": "29210"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=40, check=False, env=env)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    folder = tmp_path / "kube"
    (folder / "logs").mkdir(parents=True)
    return folder


@pytest.fixture
def stand_in(state: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line names the state folder, as the script's own processes do."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", f"{state}/stand-in"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process that has nothing to do with the state folder."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    process.kill()
    process.wait()


def test_start_on_another_port_than_the_running_apiserver_says_so_at_once(
    state: Path, stand_in: subprocess.Popen[bytes]
) -> None:
    for name in ("etcd", "kube-apiserver"):
        (state / f"{name}.pid").write_text(f"{stand_in.pid}\n")
    (state / "kube-apiserver.port").write_text("29100\n")
    done = _script(state, "start")
    assert done.returncode != 0
    assert "already runs on port 29100" in done.stderr, done.stderr


def test_start_on_another_etcd_port_than_the_running_etcd_says_so_at_once(
    state: Path, stand_in: subprocess.Popen[bytes]
) -> None:
    (state / "etcd.pid").write_text(f"{stand_in.pid}\n")
    (state / "etcd.port").write_text("29110\n")
    done = _script(state, "start")
    assert done.returncode != 0
    assert "etcd of" in done.stderr and "already runs on port 29110, not BUDEVAL_ETCD_PORT=29210" in done.stderr, (
        done.stderr
    )


def test_a_pid_file_naming_another_process_is_neither_running_nor_stopped(
    state: Path, stranger: subprocess.Popen[bytes]
) -> None:
    for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
        (state / f"{name}.pid").write_text(f"{stranger.pid}\n")
    status = _script(state, "status")
    assert status.returncode != 0 and "kube-apiserver: stopped" in status.stdout, status.stdout
    assert _script(state, "stop").returncode == 0
    assert stranger.poll() is None, "stop signalled a process that was not the apiserver's"
    assert not list(state.glob("*.pid")), "the stale pid files stay"
