"""Session fixture: the real etcd + kube-apiserver + kube-controller-manager from scripts/kube/apiserver.sh."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from budeval.backends.kubernetes import KubernetesBackend
from budeval.backends.kubernetes.api import JsonApi
from budeval.config import Settings
from tests.k8s.kubelet import Behaviour, FakeKubelet

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "kube" / "apiserver.sh"
RUNNER_SA = "budeval-runner"


def kube_state_dir() -> Path:
    return Path(os.environ.get("BUDEVAL_KUBE_STATE") or "/tmp/budeval-kube")


def run_script(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[Path]:
    """Starts (building once if needed) the apiserver; stops it afterwards unless it was already running."""
    was_running = run_script("status", timeout=30).returncode == 0
    started = run_script("start")
    if started.returncode != 0:
        pytest.fail(f"scripts/kube/apiserver.sh start failed:\n{started.stderr[-3000:]}")
    env = run_script("env", timeout=30).stdout.strip()
    assert env.startswith("KUBECONFIG="), env
    yield Path(env.split("=", 1)[1])
    if not was_running:
        run_script("stop", timeout=120)


def new_client(kubeconfig: Path) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="session")
def kube_admin(kube_cluster: Path) -> JsonApi:
    return JsonApi(new_client(kube_cluster))


@pytest.fixture
def namespace(kube_admin: JsonApi) -> Iterator[str]:
    """A fresh namespace with the runner ServiceAccount (the ServiceAccount admission plugin requires it)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube_admin.request("POST", "/api/v1/namespaces", what="ns", body={"metadata": {"name": name}})
    kube_admin.request(
        "POST",
        f"/api/v1/namespaces/{name}/serviceaccounts",
        what="sa",
        body={"metadata": {"name": RUNNER_SA}, "automountServiceAccountToken": False},
    )
    yield name
    kube_admin.request("DELETE", f"/api/v1/namespaces/{name}", what="delete ns")


@pytest.fixture
def settings(tmp_path: Path, namespace: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        results_root=tmp_path / "results",
        backend="kubernetes",
        namespace=namespace,
        runner_service_account=RUNNER_SA,
        runner_image="registry.example/budeval/opencompass-runner:0.5.4",
        unschedulable_after_s=60.0,  # tests of the unschedulable class lower it; elsewhere a busy host must not
    )


@pytest.fixture
def backend(settings: Settings, kube_cluster: Path) -> KubernetesBackend:
    return KubernetesBackend(settings, new_client(kube_cluster), backoff_limit=0, watch_timeout_s=30)


@pytest.fixture
def kubelet_factory(kube_cluster: Path, namespace: str) -> Iterator[Callable[..., FakeKubelet]]:
    started: list[FakeKubelet] = []

    def make(decide: Callable[[dict[str, Any]], Behaviour], **kwargs: Any) -> FakeKubelet:
        kubelet = FakeKubelet(
            new_client(kube_cluster), namespace, kube_cluster.parent / "pki", decide=decide, **kwargs
        ).start()
        started.append(kubelet)
        return kubelet

    yield make
    for kubelet in started:
        kubelet.stop()
