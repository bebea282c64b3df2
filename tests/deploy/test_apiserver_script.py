"""scripts/kube/apiserver.sh start when the apiserver of the same state folder already runs on another port (another
BUDEVAL_KUBE_PORT): a clear error at once, not 60 s of /readyz on a port nothing listens on and "not ready".

No server is started: the state folder's pid files name this test's own process (alive), and the recorded port is
another one. Needs the cached binaries (the script builds otherwise), like every apiserver test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_start_on_another_port_than_the_running_apiserver_says_so_at_once(tmp_path: Path) -> None:
    state = tmp_path / "kube"
    (state / "logs").mkdir(parents=True)
    for name in ("etcd", "kube-apiserver"):
        (state / f"{name}.pid").write_text(f"{os.getpid()}\n")
    (state / "kube-apiserver.port").write_text("29100\n")
    env = {**os.environ, "BUDEVAL_KUBE_STATE": str(state), "BUDEVAL_KUBE_PORT": "29200", "BUDEVAL_ETCD_PORT": "29210"}
    done = subprocess.run(
        [str(REPO / "scripts" / "kube" / "apiserver.sh"), "start"],
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
        env=env,
    )
    assert done.returncode != 0
    assert "already runs on port 29100" in done.stderr, done.stderr
