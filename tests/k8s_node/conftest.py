"""Package fixture: a real node (scripts/kube/node.sh: containerd, runc, kubelet, kube-scheduler, kube-proxy) next to
the real apiserver, with the runner image built (scripts/kube/images.sh) and imported into the node's containerd.

The node is started through the scripts and stopped by PID when this package's tests end (package scope: the fake
kubelet tests of tests/k8s must not share the apiserver with a real scheduler). A node that cannot start fails the
tests; nothing here skips.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from budeval.backends.kubernetes import KubernetesBackend
from budeval.backends.kubernetes.api import JsonApi
from budeval.config import Settings

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "scripts" / "kube"
RUNNER_SA = "budeval-runner"
RUNNER_IMAGE = "opencompass-runner:0.5.4-cpu"
SERVICE_IMAGE = "budeval:0.1.0"
RESULTS_ROOT = "/results"


def script(name: str, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KUBE / name), *args], capture_output=True, text=True, timeout=timeout, check=False)


def node_name() -> str:
    return os.environ.get("BUDEVAL_NODE_NAME") or "budeval-node"


@pytest.fixture(scope="package")
def real_node() -> Iterator[Path]:
    """Starts (building once if needed) the apiserver and the node, imports the runner image; yields the admin
    kubeconfig. Stops what it started."""
    api_was_running = script("apiserver.sh", "status", timeout=30).returncode == 0
    node_was_running = script("node.sh", "status", timeout=30).returncode == 0
    try:
        started = script("node.sh", "start")
        if started.returncode != 0:
            pytest.fail(f"scripts/kube/node.sh start failed:\n{started.stderr[-4000:]}")
        imported = script("images.sh", "import", "runner")
        if imported.returncode != 0:
            pytest.fail(f"scripts/kube/images.sh import runner failed:\n{imported.stderr[-4000:]}")
        line = script("apiserver.sh", "env", timeout=30).stdout.strip()
        assert line.startswith("KUBECONFIG="), line
        yield Path(line.split("=", 1)[1])
    finally:
        if not node_was_running:
            script("node.sh", "stop", timeout=300)
        if not api_was_running:
            script("apiserver.sh", "stop", timeout=120)


def new_client(kubeconfig: Path) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="package")
def service_image(real_node: Path) -> str:
    """The service image (this checkout, scripts/kube/images.sh service: rebuilt when the sources changed), imported."""
    imported = script("images.sh", "import", "service")
    if imported.returncode != 0:
        pytest.fail(f"scripts/kube/images.sh import service failed:\n{imported.stderr[-4000:]}")
    return SERVICE_IMAGE


@pytest.fixture(scope="package")
def kube_admin(real_node: Path) -> JsonApi:
    return JsonApi(new_client(real_node))


@pytest.fixture
def namespace(kube_admin: JsonApi, tmp_path: Path) -> Iterator[str]:
    """A fresh namespace with the runner ServiceAccount and a results PVC bound to a hostPath PV under tmp_path."""
    name = f"n-{uuid.uuid4().hex[:10]}"
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o777)  # hostPath volumes ignore fsGroup; the runner is uid 1000
    kube_admin.request("POST", "/api/v1/namespaces", what="ns", body={"metadata": {"name": name}})
    kube_admin.request(
        "POST",
        f"/api/v1/namespaces/{name}/serviceaccounts",
        what="sa",
        body={"metadata": {"name": RUNNER_SA}, "automountServiceAccountToken": False},
    )
    pv = f"results-{name}"
    kube_admin.request(
        "POST",
        "/api/v1/persistentvolumes",
        what="pv",
        body={
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(results), "type": "Directory"},
            },
        },
    )
    kube_admin.request(
        "POST",
        f"/api/v1/namespaces/{name}/persistentvolumeclaims",
        what="pvc",
        body={
            "metadata": {"name": "budeval-results"},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    yield name
    kube_admin.request("DELETE", f"/api/v1/namespaces/{name}", what="delete ns")
    kube_admin.request("DELETE", f"/api/v1/persistentvolumes/{pv}", what="delete pv")


@pytest.fixture
def settings(tmp_path: Path, namespace: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        results_root=Path(RESULTS_ROOT),
        backend="kubernetes",
        namespace=namespace,
        runner_service_account=RUNNER_SA,
        runner_image=RUNNER_IMAGE,
        results_pvc="budeval-results",
        unschedulable_after_s=60.0,
    )


@pytest.fixture
def backend(settings: Settings, real_node: Path) -> KubernetesBackend:
    return KubernetesBackend(settings, new_client(real_node), backoff_limit=0, watch_timeout_s=30)
