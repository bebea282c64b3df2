"""scripts/kube/node.sh stop after a crash: a containerd killed with SIGKILL leaves its shims and their containers
running; `stop` must still end them, unmount what was mounted under the state folder and remove the bridge, and a
later `start` must work. Each test starts the node again at its end, so the rest of the package keeps its node."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from budeval.backends.kubernetes.api import JsonApi
from tests.k8s.helpers import wait_until
from tests.k8s_node.conftest import KUBE, node_name, script
from tests.k8s_node.test_node import create_pod, pod

pytestmark = pytest.mark.k8s

STATE = Path(os.environ.get("BUDEVAL_NODE_STATE") or "/tmp/budeval-node")
BRIDGE = os.environ.get("BUDEVAL_NODE_BRIDGE") or "budeval0"


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed container waits for its reaper for a moment)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def container_pids() -> list[int]:
    """This node's container processes (the init.pid files in containerd's task state) and containerd shims (their
    command line names this node's containerd socket)."""
    files = (STATE / "containerd" / "state" / "io.containerd.runtime.v2.task").glob("*/*/init.pid")
    pids = [int(f.read_text().strip()) for f in files if f.read_text().strip()]
    sock = str(STATE / "containerd" / "containerd.sock").encode()
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and sock in cmd:
            pids.append(int(proc.name))
    return pids


def kube_chains() -> list[str]:
    """The KUBE- iptables chains of the filter, nat and mangle tables (the kubelet's and kube-proxy's)."""
    chains = []
    for table in ("filter", "nat", "mangle"):
        out = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True, check=True).stdout
        chains += [f"{table}/{line.split()[1]}" for line in out.splitlines() if line.startswith("-N KUBE-")]
    return chains


def mounts_under_state() -> list[str]:
    out = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=True).stdout
    return [m for m in out.splitlines() if m.startswith(f"{STATE}/")]


def test_stop_after_containerd_was_killed_ends_its_containers(kube_admin: JsonApi, namespace: str) -> None:
    """Also: `stop` run under other BUDEVAL_NODE_NAME / BUDEVAL_NODE_BRIDGE values still removes the Node and the
    bridge that `start` made (it reads them from the state folder), and leaves no KUBE- iptables chain."""
    name = create_pod(kube_admin, namespace, "sleep 600")
    wait_until(
        lambda: pod(kube_admin, namespace, name)["status"].get("phase") == "Running", "the pod to run", timeout=300
    )
    assert kube_chains(), "the kubelet made no KUBE- chains: the check after stop would prove nothing"
    running = container_pids()
    assert running and all(alive(p) for p in running), running
    os.kill(int((STATE / "containerd.pid").read_text()), signal.SIGKILL)
    try:
        stopped = subprocess.run(
            [str(KUBE / "node.sh"), "stop"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**os.environ, "BUDEVAL_NODE_NAME": "not-the-started-one", "BUDEVAL_NODE_BRIDGE": "budevalx9"},
        )
        assert stopped.returncode == 0, stopped.stderr[-3000:]
        # Shims exit on their own once their last task is deleted: a few seconds' grace, not a minute.
        deadline = time.monotonic() + 10
        while (left := [p for p in running if alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"containers or shims still running 10 s after stop: {left}"

        assert not mounts_under_state(), mounts_under_state()
        assert not kube_chains(), kube_chains()
        assert subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, check=False).returncode != 0
        nodes = kube_admin.request("GET", "/api/v1/nodes", what="nodes")["items"]
        assert node_name() not in [n["metadata"]["name"] for n in nodes]
    finally:
        started = script("node.sh", "start")
    assert started.returncode == 0, started.stderr[-3000:]
