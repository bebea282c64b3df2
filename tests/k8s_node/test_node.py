"""A real node: pods really run (runc via containerd), logs come through the apiserver from the real kubelet, the
fake nvidia.com/gpu capacity schedules GPU requests, and the backend classifies failures a real node produces on
demand (a crashing container, a deadline, a cancelled evaluation whose pods and containers really go)."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import pytest

from budeval.backends.base import RunSpec
from budeval.backends.kubernetes import KubernetesBackend
from budeval.backends.kubernetes import manifests as m
from budeval.backends.kubernetes.api import JsonApi
from budeval.schemas.request import EvalRequest
from tests.k8s.helpers import Reports, wait_until
from tests.k8s_node.conftest import KUBE, RUNNER_IMAGE, node_name

pytestmark = pytest.mark.k8s


def pods_path(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/pods"


def create_pod(api: JsonApi, ns: str, command: str, **resources: Any) -> str:
    name = f"p-{uuid.uuid4().hex[:8]}"
    container: dict[str, Any] = {
        "name": "main",
        "image": RUNNER_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", command],
    }
    if resources:
        container["resources"] = {"limits": resources}
    api.request(
        "POST",
        pods_path(ns),
        what="pod",
        body={
            "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "serviceAccountName": "budeval-runner", "containers": [container]},
        },
    )
    return name


def pod(api: JsonApi, ns: str, name: str) -> dict[str, Any]:
    return api.request("GET", f"{pods_path(ns)}/{name}", what="pod")


def finished(api: JsonApi, ns: str, name: str) -> dict[str, Any] | None:
    p = pod(api, ns, name)
    return p if p["status"].get("phase") in ("Succeeded", "Failed") else None


def pod_log(api: JsonApi, ns: str, name: str) -> str:
    return api.text(f"{pods_path(ns)}/{name}/log", what="log")


def test_pod_runs_in_runc_and_its_log_is_read_through_the_apiserver(kube_admin: JsonApi, namespace: str) -> None:
    name = create_pod(
        kube_admin,
        namespace,
        "echo hello-from-$(hostname); id -u; python -c 'import opencompass; print(\"oc\", opencompass.__version__)'",
    )
    done = wait_until(lambda: finished(kube_admin, namespace, name), "the pod to finish", timeout=300)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["spec"]["nodeName"] == node_name()
    assert done["status"]["podIP"].startswith("10.")  # an address from the CNI bridge's range
    log = pod_log(kube_admin, namespace, name)
    assert f"hello-from-{name}" in log  # the pod's own UTS namespace
    assert "\n1000\n" in log and "oc 0.5.4" in log  # the runner image's user and OpenCompass


def test_gpu_requests_schedule_on_the_advertised_capacity(kube_admin: JsonApi, namespace: str) -> None:
    node = kube_admin.request("GET", f"/api/v1/nodes/{node_name()}", what="node")
    assert node["status"]["allocatable"].get("nvidia.com/gpu") == "8", node["status"]["allocatable"]
    fits = create_pod(kube_admin, namespace, "echo gpu-ok", **{"nvidia.com/gpu": "2"})
    too_many = create_pod(kube_admin, namespace, "echo never", **{"nvidia.com/gpu": "9"})
    done = wait_until(lambda: finished(kube_admin, namespace, fits), "the GPU pod to finish", timeout=300)
    assert done["status"]["phase"] == "Succeeded"
    assert "gpu-ok" in pod_log(kube_admin, namespace, fits)

    def unschedulable() -> dict[str, Any] | None:
        conds = pod(kube_admin, namespace, too_many)["status"].get("conditions") or []
        return next((c for c in conds if c["type"] == "PodScheduled" and c["reason"] == "Unschedulable"), None)

    cond = wait_until(unschedulable, "the scheduler to refuse 9 GPUs", timeout=120)
    assert "Insufficient nvidia.com/gpu" in cond["message"]


def raw_spec(eval_id: str, config_text: str, *, timeout_s: int = 600) -> RunSpec:
    """A run whose OpenCompass config is arbitrary Python: OpenCompass executes it when it loads the config."""
    request = EvalRequest.model_validate(
        {
            "eval_id": eval_id,
            "model": {"name": "smollm2", "source": {"type": "huggingface", "path": "/models/none"}},
            "datasets": ["tiny_qa"],
            "resources": {"gpus": 0, "cpu": "100m", "memory": "1Gi"},
            "timeout_s": 600,
        }
    )
    return RunSpec(
        eval_id=eval_id,
        run_id="r0",
        config_text=config_text,
        model=request.model,
        datasets=["tiny_qa"],
        resources=request.resources,
        timeout_s=timeout_s,
    )


def test_a_crashing_container_is_classified_crash_with_its_traceback(backend: KubernetesBackend) -> None:
    reports = Reports()
    watch = backend.watch(reports)
    try:
        backend.submit(raw_spec("eval-crash", "raise RuntimeError('budeval-node-crash-marker')\n"))
        state = reports.wait("r0", timeout=300)
    finally:
        watch.stop()
    assert (state.phase, state.reason_class) == ("failed", "crash"), state
    assert "budeval-node-crash-marker" in state.log_excerpt  # read through pods/log from the real kubelet
    assert backend.get("eval-crash", "r0").reason_class == "crash"


def test_a_run_past_its_deadline_is_deadline_exceeded(backend: KubernetesBackend, kube_admin: JsonApi) -> None:
    reports = Reports()
    watch = backend.watch(reports)
    try:
        backend.submit(raw_spec("eval-deadline", "import time\ntime.sleep(3600)\n", timeout_s=5))
        state = reports.wait("r0", timeout=300)
    finally:
        watch.stop()
    assert (state.phase, state.reason_class) == ("failed", "deadline_exceeded"), state
    # activeDeadlineSeconds really ends the run: the Job controller deletes the pod, the kubelet stops the container.
    ns, sel = backend.namespace, {"labelSelector": f"{m.LABEL_EVAL}=eval-deadline"}

    def stopped() -> bool:
        pods = kube_admin.request("GET", pods_path(ns), what="pods", query=sel)["items"]
        return all(
            "running" not in (cs.get("state") or {}) for p in pods for cs in p["status"].get("containerStatuses") or []
        ) and not any(p["status"].get("phase") == "Running" for p in pods)

    wait_until(stopped, "the past-deadline run's container to stop", timeout=300)


def containerd_tasks() -> str:
    out = subprocess.run(
        [str(KUBE / "node.sh"), "ctr", "tasks", "ls"], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout


def test_cancel_really_deletes_the_running_pod_and_its_container(
    backend: KubernetesBackend, kube_admin: JsonApi
) -> None:
    ns = backend.namespace
    backend.submit(raw_spec("eval-cancel", "import time\ntime.sleep(3600)\n"))
    sel = {"labelSelector": f"{m.LABEL_EVAL}=eval-cancel"}

    def running_container() -> str | None:
        for p in kube_admin.request("GET", pods_path(ns), what="pods", query=sel)["items"]:
            for cs in p["status"].get("containerStatuses") or []:
                if "running" in (cs.get("state") or {}):
                    return str(cs["containerID"]).removeprefix("containerd://")
        return None

    container = wait_until(running_container, "the run's container to be running", timeout=300)
    assert container in containerd_tasks()
    backend.cancel("eval-cancel")

    def gone() -> bool:
        pods = kube_admin.request("GET", pods_path(ns), what="pods", query=sel)["items"]
        return not pods and container not in containerd_tasks()

    wait_until(gone, "the cancelled run's pod and container to be gone", timeout=300)
    assert backend.get("eval-cancel", "r0").phase == "unknown"
    assert not kube_admin.request("GET", f"/api/v1/namespaces/{ns}/configmaps", what="cms", query=sel)["items"]
