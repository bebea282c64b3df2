"""The service image's containers stop on the pod's SIGTERM: a deleted pod goes away promptly, long before its
terminationGracePeriodSeconds (600 here), whether it is deleted while the process still starts or while it serves.
``python -m budeval.sidecar`` is the chart's ``daprd`` container (PID 1 of its container, where the kernel drops a
signal without a handler); tests/sidecar/test_sidecar_signals.py proves the same with plain processes."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from budeval.backends.kubernetes.api import JsonApi
from budeval.errors import NotFoundError
from tests.k8s.helpers import wait_until
from tests.k8s_node.conftest import SERVICE_IMAGE

pytestmark = pytest.mark.k8s

GRACE_S = 600
#: Far below GRACE_S: a container that ignored SIGTERM would be killed only when the grace period ends.
PROMPT_S = 120


def sidecar_pod(api: JsonApi, ns: str) -> str:
    name = f"sidecar-{uuid.uuid4().hex[:8]}"
    api.request("POST", f"/api/v1/namespaces/{ns}/pods", what="pod", body={
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": "budeval-runner",
            "terminationGracePeriodSeconds": GRACE_S,
            "containers": [{
                "name": "daprd",
                "image": SERVICE_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["python", "-m", "budeval.sidecar"],
                "args": ["--state=/tmp/sidecar.db", "--grpc-port=50001", "--http-port=3500", "--app-port=8080"],
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    })
    return name


def get_pod(api: JsonApi, ns: str, name: str) -> dict[str, Any] | None:
    try:
        return api.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}", what="pod")
    except NotFoundError:
        return None


def running(api: JsonApi, ns: str, name: str) -> bool:
    pod = get_pod(api, ns, name) or {}
    return any("running" in (c.get("state") or {}) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def delete_and_time(api: JsonApi, ns: str, name: str) -> float:
    began = time.monotonic()
    api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", what="delete pod")
    wait_until(lambda: get_pod(api, ns, name) is None, f"pod {name} to go after its delete", timeout=PROMPT_S)
    return time.monotonic() - began


def test_a_serving_sidecar_pod_goes_promptly_on_delete(kube_admin: JsonApi, service_image: str, namespace: str) -> None:
    name = sidecar_pod(kube_admin, namespace)
    wait_until(lambda: "embedded sidecar started" in kube_admin.text(
        f"/api/v1/namespaces/{namespace}/pods/{name}/log", what="log") if running(kube_admin, namespace, name)
        else False, "the sidecar to serve", timeout=300)
    assert delete_and_time(kube_admin, namespace, name) < PROMPT_S


def test_a_sidecar_pod_deleted_while_it_starts_goes_promptly(
    kube_admin: JsonApi, service_image: str, namespace: str
) -> None:
    name = sidecar_pod(kube_admin, namespace)
    wait_until(lambda: running(kube_admin, namespace, name), "the sidecar container to run", timeout=300)
    assert delete_and_time(kube_admin, namespace, name) < PROMPT_S  # likely still importing gRPC and the Dapr SDK
