"""`helm install` into the real kube-apiserver (scripts/kube/apiserver.sh): objects, hooks, and RBAC proven by the
apiserver's own authorizer (SubjectAccessReview) and by calls made with the controller account's token.

The cluster has no scheduler or kubelet: tests/k8s/kubelet.py plays them, so the pre-install/pre-upgrade migration
Job's pod "runs" (succeeds) and Helm's wait for the hook ends. The Deployment gets no pods (no ReplicaSet controller
runs there), which this test does not need. A minimal components.dapr.io CRD (dapr-component-crd.yaml, the schema
test_chart.py validates Components against offline) stands in for Dapr's, so the chart's Components are created and
checked by the apiserver too.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from budeval.backends.kubernetes.api import AlreadyExists, JsonApi
from budeval.errors import BudevalError, NotFoundError
from tests.deploy.helm import CHART, helm
from tests.k8s.kubelet import Behaviour, FakeKubelet
from tests.support import wait_until

pytestmark = pytest.mark.k8s

CRD = Path(__file__).with_name("dapr-component-crd.yaml")
RELEASE = "budeval"
CONTROLLER_SA = "budeval-controller"
RUNNER_SA = "budeval-runner"
WAIT_S = 60.0
S3_ACCESS = "AKIA-deploy-test"
S3_SECRET = "s3-secret-deploy-test"


@dataclass
class Cluster:
    kubeconfig: Path
    admin: JsonApi
    namespace: str
    other_namespace: str
    kubelet_pods: list[dict[str, Any]] = field(default_factory=list)

    def helm(self, *args: str) -> str:
        return helm(*args, "--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace)

    def get(self, path: str) -> dict[str, Any]:
        return self.admin.request("GET", path, what=f"get {path}")

    def ns_path(self, group_version: str, resource: str, name: str = "", namespace: str | None = None) -> str:
        base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        path = f"{base}/namespaces/{namespace or self.namespace}/{resource}"
        return f"{path}/{name}" if name else path


wait_for = partial(wait_until, timeout=WAIT_S, interval=0.2)


def install_crd(admin: JsonApi) -> None:
    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    with contextlib.suppress(AlreadyExists):
        admin.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", what="create CRD", body=crd)

    def established() -> bool:
        got = admin.request(
            "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/components.dapr.io", what="get CRD"
        )
        conditions = (got.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for(established, "the components.dapr.io CRD")


@pytest.fixture(scope="module")
def cluster(kubeconfig: Path) -> Iterator[Cluster]:
    admin = JsonApi(k8s_config.new_client_from_config(config_file=str(kubeconfig)))
    suffix = uuid.uuid4().hex[:8]
    c = Cluster(kubeconfig, admin, f"deploy-{suffix}", f"deploy-{suffix}-other")

    def decide(pod: dict[str, Any]) -> Behaviour:
        c.kubelet_pods.append(pod)
        return Behaviour(outcome="succeed", log="migrations applied\n")

    kubelet: FakeKubelet | None = None
    try:
        for ns in (c.namespace, c.other_namespace):
            admin.request("POST", "/api/v1/namespaces", what="create namespace", body={"metadata": {"name": ns}})
        install_crd(admin)
        kubelet = FakeKubelet(
            k8s_config.new_client_from_config(config_file=str(kubeconfig)),
            c.namespace,
            kubeconfig.parent / "pki",
            decide=decide,
        ).start()
        c.helm(
            "install",
            RELEASE,
            str(CHART),
            "--timeout",
            "3m",
            "--set",
            f"s3.accessKey={S3_ACCESS}",
            "--set",
            f"s3.secretKey={S3_SECRET}",
        )
        yield c
    finally:
        if kubelet is not None:
            kubelet.stop()
        for ns in (c.namespace, c.other_namespace):
            with contextlib.suppress(BudevalError):
                admin.request("DELETE", f"/api/v1/namespaces/{ns}", what="delete namespace")


def test_install_creates_the_objects(cluster: Cluster) -> None:
    c = cluster
    assert c.get(c.ns_path("apps/v1", "deployments", RELEASE))["spec"]["template"]["spec"]["serviceAccountName"] == (
        CONTROLLER_SA
    )
    assert c.get(c.ns_path("v1", "services", RELEASE))["spec"]["ports"][0]["port"] == 8080
    assert c.get(c.ns_path("v1", "serviceaccounts", RUNNER_SA))["automountServiceAccountToken"] is False
    c.get(c.ns_path("v1", "serviceaccounts", CONTROLLER_SA))
    c.get(c.ns_path("rbac.authorization.k8s.io/v1", "roles", f"{RELEASE}-controller"))
    c.get(c.ns_path("rbac.authorization.k8s.io/v1", "rolebindings", f"{RELEASE}-controller"))
    pvc = c.get(c.ns_path("v1", "persistentvolumeclaims", f"{RELEASE}-results"))
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for name in ("budeval-clickhouse", "budeval-s3", "budeval-api-token"):
        c.get(c.ns_path("v1", "secrets", name))
    s3 = c.get(c.ns_path("v1", "secrets", "budeval-s3"))["data"]
    assert base64.b64decode(s3["access-key"]).decode() == S3_ACCESS
    annotations = c.get(c.ns_path("apps/v1", "deployments", RELEASE))["spec"]["template"]["metadata"]["annotations"]
    assert annotations["dapr.io/app-id"] == "budeval"
    components = c.get(c.ns_path("dapr.io/v1alpha1", "components"))["items"]
    assert {(x["metadata"]["name"], x["spec"]["type"]) for x in components} == {
        ("budeval-pubsub", "pubsub.redis"),
        ("budeval-statestore", "state.redis"),
    }
    state = next(x for x in components if x["metadata"]["name"] == "budeval-statestore")
    assert {"name": "actorStateStore", "value": "true"} in state["spec"]["metadata"]
    assert "deployed" in c.helm("status", RELEASE)


def test_migration_hook_ran_and_was_cleaned_up(cluster: Cluster) -> None:
    c = cluster
    migrate = [p for p in c.kubelet_pods if p["metadata"]["labels"].get("app.kubernetes.io/component") == "migrate"]
    assert len(migrate) == 1, "the pre-install hook ran once"
    spec = migrate[0]["spec"]
    assert spec["containers"][0]["args"] == ["migrate"]
    assert spec["serviceAccountName"] == "budeval-migrate"
    # hook-succeeded: Helm deleted the Job, its account and its Secret copy after the Job completed.
    for resource, gv in (("jobs", "batch/v1"), ("serviceaccounts", "v1"), ("secrets", "v1")):
        with pytest.raises(NotFoundError):
            c.get(c.ns_path(gv, resource, "budeval-migrate"))


def access_review(c: Cluster, account: str, attrs: dict[str, str]) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{c.namespace}:{account}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{c.namespace}", "system:authenticated"],
            "resourceAttributes": attrs,
        },
    }
    got = c.admin.request(
        "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", what="access review", body=review
    )
    return bool(got["status"]["allowed"])


#: (account, verb, group, resource, subresource, namespace: "own" | "other" | "" (cluster), allowed)
REVIEWS = {
    "controller-creates-jobs": (CONTROLLER_SA, "create", "batch", "jobs", "", "own", True),
    "controller-watches-jobs": (CONTROLLER_SA, "watch", "batch", "jobs", "", "own", True),
    "controller-cancels-jobs-by-label": (CONTROLLER_SA, "deletecollection", "batch", "jobs", "", "own", True),
    "controller-reads-pod-logs": (CONTROLLER_SA, "get", "", "pods", "log", "own", True),
    "controller-creates-configmaps": (CONTROLLER_SA, "create", "", "configmaps", "", "own", True),
    "controller-lists-events": (CONTROLLER_SA, "list", "", "events", "", "own", True),
    "controller-no-pods-exec-create": (CONTROLLER_SA, "create", "", "pods", "exec", "own", False),
    "controller-no-pods-exec-get": (CONTROLLER_SA, "get", "", "pods", "exec", "own", False),
    "controller-no-secrets-get": (CONTROLLER_SA, "get", "", "secrets", "", "own", False),
    "controller-no-secrets-list": (CONTROLLER_SA, "list", "", "secrets", "", "own", False),
    "controller-no-pod-create": (CONTROLLER_SA, "create", "", "pods", "", "own", False),
    "controller-no-role-escalation": (CONTROLLER_SA, "update", "rbac.authorization.k8s.io", "roles", "", "own", False),
    "controller-no-jobs-other-namespace": (CONTROLLER_SA, "create", "batch", "jobs", "", "other", False),
    "controller-no-jobs-cluster-wide": (CONTROLLER_SA, "list", "batch", "jobs", "", "", False),
    "controller-no-nodes": (CONTROLLER_SA, "list", "", "nodes", "", "", False),
    "runner-no-jobs": (RUNNER_SA, "create", "batch", "jobs", "", "own", False),
    "runner-no-pods": (RUNNER_SA, "get", "", "pods", "", "own", False),
    "runner-no-configmaps": (RUNNER_SA, "get", "", "configmaps", "", "own", False),
}


@pytest.mark.parametrize("case", REVIEWS, ids=list(REVIEWS))
def test_access_review(cluster: Cluster, case: str) -> None:
    account, verb, group, resource, sub, where, allowed = REVIEWS[case]
    attrs = {"verb": verb, "group": group, "resource": resource}
    if sub:
        attrs["subresource"] = sub
    if where:
        attrs["namespace"] = cluster.namespace if where == "own" else cluster.other_namespace
    assert access_review(cluster, account, attrs) is allowed


def controller_api(c: Cluster) -> JsonApi:
    """An API client authenticated as the controller ServiceAccount (its legacy token Secret, as on v1.20)."""

    def token() -> str | None:
        sa = c.get(c.ns_path("v1", "serviceaccounts", CONTROLLER_SA))
        for ref in sa.get("secrets") or []:
            secret = c.get(c.ns_path("v1", "secrets", ref["name"]))
            if secret.get("type") == "kubernetes.io/service-account-token" and "token" in secret.get("data", {}):
                return base64.b64decode(secret["data"]["token"]).decode()
        return None

    value = wait_for(token, "the controller account's token")
    admin_conf = c.admin.api.configuration
    conf = k8s.Configuration()
    conf.host = admin_conf.host
    conf.ssl_ca_cert = admin_conf.ssl_ca_cert
    conf.api_key = {"BearerToken": value}
    conf.api_key_prefix = {"BearerToken": "Bearer"}
    return JsonApi(k8s.ApiClient(conf))


def test_controller_token_really_limited(cluster: Cluster) -> None:
    c = cluster
    api = controller_api(c)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rbac-probe"}, "data": {"a": "b"}}
    api.request("POST", c.ns_path("v1", "configmaps"), what="create configmap", body=cm)
    api.request(
        "PATCH",
        c.ns_path("v1", "configmaps", "rbac-probe"),
        what="patch configmap",
        body={"metadata": {"labels": {"x": "y"}}},
        content_type="application/merge-patch+json",
    )
    api.request("DELETE", c.ns_path("v1", "configmaps", "rbac-probe"), what="delete configmap")
    api.request("GET", c.ns_path("batch/v1", "jobs"), what="list jobs")
    for method, path in (
        ("GET", c.ns_path("v1", "secrets")),
        ("GET", c.ns_path("v1", "secrets", "budeval-api-token")),
        ("GET", c.ns_path("batch/v1", "jobs", namespace=c.other_namespace)),
        ("POST", c.ns_path("v1", "configmaps", namespace=c.other_namespace)),
    ):
        with pytest.raises(BudevalError) as err:
            api.request(method, path, what=f"{method} {path}", body=cm if method == "POST" else None)
        assert "403" in str(err.value) or "forbidden" in str(err.value).lower(), str(err.value)


def test_upgrade_runs_the_hook_again_and_keeps_the_generated_token(cluster: Cluster) -> None:
    c = cluster

    def token() -> str:
        data = c.get(c.ns_path("v1", "secrets", "budeval-api-token"))["data"]["token"]
        return base64.b64decode(data).decode()

    before = token()
    hooks_before = len(c.kubelet_pods)
    c.helm("upgrade", RELEASE, str(CHART), "--timeout", "3m", "--reuse-values", "--set", "runner.queue=evals")
    assert token() == before, "a generated API token survives upgrades (lookup)"
    assert len(c.kubelet_pods) == hooks_before + 1, "the pre-upgrade hook ran"
    env = c.get(c.ns_path("apps/v1", "deployments", RELEASE))["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "BUDEVAL_DEFAULT_QUEUE", "value": "evals"} in env


def test_uninstall_keeps_the_results_volume(cluster: Cluster) -> None:
    c = cluster
    c.helm("uninstall", RELEASE, "--timeout", "2m")
    with pytest.raises(NotFoundError):
        c.get(c.ns_path("apps/v1", "deployments", RELEASE))
    with pytest.raises(NotFoundError):
        c.get(c.ns_path("rbac.authorization.k8s.io/v1", "roles", f"{RELEASE}-controller"))
    assert not c.get(c.ns_path("dapr.io/v1alpha1", "components"))["items"]
    c.get(c.ns_path("v1", "persistentvolumeclaims", f"{RELEASE}-results"))  # helm.sh/resource-policy: keep
