"""The Helm chart, offline: lint, rendered objects valid for Kubernetes 1.29 and 1.33, values schema, secrets, RBAC."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from budeval.config import Settings, env_names
from budeval.storage.factory import open_archive
from tests.deploy.helm import (
    CHART,
    EXAMPLES,
    Doc,
    HelmError,
    find,
    helm,
    is_hook,
    one,
    pod_specs,
    template,
    template_text,
)

K8S_VERSIONS = ["1.29.0", "1.33.0"]
VALUE_SETS: dict[str, list[Path]] = {"default": [], **{p.stem: [p] for p in EXAMPLES}}
CRD = Path(__file__).with_name("dapr-component-crd.yaml")


def test_two_example_values_files_exist() -> None:
    assert {p.stem for p in EXAMPLES} >= {"minio-external-clickhouse", "kueue-gpu-nodes"}


# -- lint and validation ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", VALUE_SETS, ids=list(VALUE_SETS))
def test_helm_lint_strict(values: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for f in VALUE_SETS[values]:
        args += ["--values", str(f)]
    out = helm(*args)
    assert "0 chart(s) failed" in out


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 structural schema as JSON Schema that rejects unknown fields (as kubernetes-validate --strict)."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "x-kubernetes-preserve-unknown-fields":
            continue
        if key == "properties":
            out[key] = {k: strict_schema(v) if k != "metadata" else v for k, v in value.items()}
        elif key == "items":
            out[key] = strict_schema(value)
        else:
            out[key] = value
    if "properties" in schema:
        out["additionalProperties"] = False
    return out


def component_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    return strict_schema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def validate_doc(doc: Doc, version: str) -> None:
    """Kubernetes kinds through kubernetes-validate (strict); Dapr Components against the CRD's schema (strict).

    kubernetes-validate ships no schema for the Dapr CRD, so Components are checked against the structural schema in
    dapr-component-crd.yaml, the same one the install test loads into the real apiserver.
    """
    if doc["apiVersion"].startswith("dapr.io/"):
        assert doc["apiVersion"] == "dapr.io/v1alpha1" and doc["kind"] == "Component", doc["kind"]
        jsonschema.validate(doc, component_schema())
        return
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS, ids=list(VALUE_SETS))
def test_rendered_objects_are_valid(values: str, version: str) -> None:
    docs = template(VALUE_SETS[values])
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "Job"} <= kinds
    errors = []
    for doc in docs:
        try:
            validate_doc(doc, version)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_validation_catches_unknown_fields(version: str) -> None:
    docs = template()
    deployment = one(docs, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesystem"] = True  # wrong level
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_doc(deployment, version)
    component = find(docs, "Component")[0]
    component["spec"]["metdata"] = []
    with pytest.raises(jsonschema.ValidationError):
        validate_doc(component, version)


# -- values schema ------------------------------------------------------------------------------------------------
BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown-top-level-key": ({"replicas": 2}, "Additional property replicas is not allowed"),
    "unknown-nested-key": ({"runner": {"gpuResource": "nvidia.com/gpu"}}, "gpuResource"),
    "wrong-type": ({"replicaCount": "two"}, "replicaCount"),
    "bad-pull-policy": ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy"),
    "no-clickhouse-dsn-nor-secret": ({"clickhouse": {"dsn": ""}}, "clickhouse.dsn"),
    "dsn-without-scheme": ({"clickhouse": {"dsn": "clickhouse:8123"}}, "clickhouse.dsn"),
    "dsn-native-protocol": ({"clickhouse": {"dsn": "clickhouse://ch:9000/db"}}, "clickhouse.dsn"),
    "chdb-dsn-relative-path": ({"clickhouse": {"dsn": "chdb://results/_clickhouse"}}, "clickhouse.dsn"),
    "s3-access-key-without-secret-key": ({"s3": {"accessKey": "AKIA0000"}}, "s3.secretKey"),
    "bad-bucket-name": ({"s3": {"bucket": "Eval_Archive"}}, "s3.bucket"),
    "root-user": ({"securityContext": {"runAsUser": 0}}, "securityContext.runAsUser"),
    "results-not-rwx": ({"results": {"accessModes": ["ReadWriteOnce"]}}, "results.accessModes"),
    "weak-api-token": ({"apiToken": {"value": "secret"}}, "apiToken.value"),
    "pubsub-type-not-pubsub": ({"dapr": {"pubsub": {"type": "state.redis"}}}, "dapr.pubsub.type"),
    "plain-password-in-component": (
        {"dapr": {"pubsub": {"metadata": [{"name": "redisPassword", "value": "hunter2"}]}}},
        "secretKeyRef is required",
    ),
    "queue-not-dns-label": ({"runner": {"queue": "Evals Queue"}}, "runner.queue"),
    "bad-toleration-operator": ({"runner": {"tolerations": [{"key": "gpu", "operator": "Maybe"}]}}, "operator"),
    "bad-gpu-resource-name": ({"runner": {"gpuResourceName": "gpu"}}, "runner.gpuResourceName"),
    "app-id-not-dns-label": ({"dapr": {"appId": "Bud_Eval"}}, "dapr.appId"),
    "service-port-out-of-range": ({"service": {"port": 70000}}, "service.port"),
    "negative-store-linger": ({"clickhouse": {"lingerMs": -1}}, "clickhouse.lingerMs"),
}


@pytest.mark.parametrize("case", BAD_VALUES, ids=list(BAD_VALUES))
def test_schema_rejects_bad_values(case: str, tmp_path: Path) -> None:
    values, expected = BAD_VALUES[case]
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(values), encoding="utf-8")
    with pytest.raises(HelmError) as err:
        template([f])
    assert "don't meet the specifications of the schema" in err.value.stderr
    assert expected in err.value.stderr


def test_schema_accepts_credentials_from_secrets(tmp_path: Path) -> None:
    f = tmp_path / "values.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "clickhouse": {"existingSecret": "ch", "dsn": ""},
                "s3": {"accessKey": "AKIA0000", "secretKey": "s3cr3t-s3cr3t"},
                "dapr": {
                    "pubsub": {"metadata": [{"name": "redisPassword", "secretKeyRef": {"name": "r", "key": "p"}}]}
                },
            }
        ),
        encoding="utf-8",
    )
    assert find(template([f]), "Deployment")


# -- secrets ------------------------------------------------------------------------------------------------------
SENTINELS = {
    "dsn": "http://budeval:ch-pass-SENTINEL1@clickhouse.example:8123/budeval",
    "access": "AKIA-SENTINEL2",
    "secret": "s3-secret-SENTINEL3",
    "token": "api-token-SENTINEL4-0123456789",
}
SECRET_ENV = {
    "BUDEVAL_STORE_DSN", "BUDEVAL_API_TOKEN", "BUDEVAL_S3_ACCESS_KEY", "BUDEVAL_S3_SECRET_KEY", "APP_API_TOKEN"
}


def render_with_sentinels() -> tuple[str, list[Doc]]:
    sets = [
        f"clickhouse.dsn={SENTINELS['dsn']}",
        f"s3.accessKey={SENTINELS['access']}",
        f"s3.secretKey={SENTINELS['secret']}",
        f"apiToken.value={SENTINELS['token']}",
    ]
    text = template_text(sets=sets)
    return text, [d for d in yaml.safe_load_all(text) if d]


def test_secret_values_only_in_secrets() -> None:
    _, docs = render_with_sentinels()
    forms = [s for v in SENTINELS.values() for s in (v, base64.b64encode(v.encode()).decode())]
    for doc in docs:
        dumped = json.dumps(doc)
        leaked = [f for f in forms if f in dumped]
        if doc["kind"] == "Secret":
            continue
        assert not leaked, f"{doc['kind']}/{doc['metadata']['name']} holds a secret value"
    holders = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    assert {"budeval-clickhouse", "budeval-s3", "budeval-api-token", "budeval-app-token", "budeval-migrate"} == holders


def test_secret_env_only_through_secret_key_refs() -> None:
    _, docs = render_with_sentinels()
    seen: set[str] = set()
    for where, spec in pod_specs(docs):
        for container in spec["containers"]:
            assert "envFrom" not in container, where
            for env in container.get("env") or []:
                if env["name"] in SECRET_ENV:
                    seen.add(env["name"])
                    assert "value" not in env, f"{where}: {env['name']} is a plain value"
                    assert set(env["valueFrom"]) == {"secretKeyRef"}, where
    assert seen == SECRET_ENV
    assert not find(docs, "ConfigMap"), "the chart needs no ConfigMap; if one appears, check it for secrets"


def test_app_token_generated_and_required_by_default() -> None:
    docs = template()
    secret = one(docs, "Secret", "budeval-app-token")
    assert len(base64.b64decode(secret["data"]["token"]).decode()) == 48
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["dapr.io/app-token-secret"] == "budeval-app-token"
    env = {e["name"]: e for e in service_container(docs)["env"]}
    assert env["APP_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "budeval-app-token", "key": "token"}
    assert env["BUDEVAL_DATASETS_ROOT"]["value"] == "/var/lib/budeval/results/_datasets"
    assert env["BUDEVAL_MODELS_ROOT"]["value"] == "/var/lib/budeval/results/_models"


def test_api_token_generated_when_not_given() -> None:
    docs = template()
    secret = one(docs, "Secret", "budeval-api-token")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 48 and token.isalnum()
    assert token != base64.b64decode(one(template(), "Secret", "budeval-api-token")["data"]["token"]).decode()


def test_existing_secrets_are_referenced_not_created() -> None:
    docs = template(VALUE_SETS["minio-external-clickhouse"])
    assert not find(docs, "Secret"), "every credential comes from an existing Secret"
    env = {e["name"]: e for e in service_container(docs)["env"]}
    assert env["BUDEVAL_STORE_DSN"]["valueFrom"]["secretKeyRef"] == {"name": "budeval-clickhouse", "key": "dsn"}
    assert env["BUDEVAL_S3_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "budeval-minio", "key": "access-key"}
    assert env["BUDEVAL_S3_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "budeval-minio", "key": "secret-key"}
    assert env["BUDEVAL_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "budeval-api", "key": "token"}
    job = one(docs, "Job")
    job_env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert job_env["BUDEVAL_STORE_DSN"]["valueFrom"]["secretKeyRef"]["name"] == "budeval-clickhouse"


# -- RBAC ---------------------------------------------------------------------------------------------------------
#: What budeval/backends/kubernetes calls: jobs (create/get/list/watch/delete, deletecollection for cancel by label),
#: pods (get/list/watch), pods/log (get), configmaps (create/get/delete, patch for the owner reference,
#: deletecollection for cancel), events (list).
EXPECTED_RULES = {
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete", "deletecollection"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},
    ("", "configmaps"): {"create", "get", "patch", "delete", "deletecollection"},
    ("", "events"): {"list"},
}
#: Only with security.credentialsFromSecretLabels: the metadata of a referenced credential
#: (budeval/backends/kubernetes/credentials.py); RBAC cannot limit `get` to metadata, hence opt-in.
SECRET_LABEL_RULES = {("", "secrets"): {"get"}}


def rules_of(role: Doc) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames/nonResourceURLs expected"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


@pytest.mark.parametrize("values", VALUE_SETS, ids=list(VALUE_SETS))
def test_rbac_rules_exactly_as_listed(values: str) -> None:
    docs = template(VALUE_SETS[values])
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding"), "nothing cluster-wide"
    role = one(docs, "Role")
    assert rules_of(role) == EXPECTED_RULES  # no Secret access by default
    flat = {(g, r, v) for (g, r), verbs in rules_of(role).items() for v in verbs}
    assert not any("*" in part for item in flat for part in item)
    binding = one(docs, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    controller_sa = one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": controller_sa, "namespace": "budeval"}]


def test_runner_account_has_no_rights_and_no_token() -> None:
    docs = template()
    runner = one(docs, "ServiceAccount", "budeval-runner")
    assert runner["automountServiceAccountToken"] is False
    bound = [s["name"] for b in find(docs, "RoleBinding") for s in b["subjects"]]
    assert "budeval-runner" not in bound
    assert env_of(service_container(docs))["BUDEVAL_RUNNER_SERVICE_ACCOUNT"] == "budeval-runner"


# -- the service's pod ----------------------------------------------------------------------------------------------
def service_container(docs: list[Doc]) -> Doc:
    containers: list[Doc] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["budeval"]
    return containers[0]


def env_of(container: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@pytest.mark.parametrize("values", VALUE_SETS, ids=list(VALUE_SETS))
def test_service_env_builds_valid_settings(values: str) -> None:
    docs = template(VALUE_SETS[values])
    container = service_container(docs)
    names = {e["name"] for e in container["env"]}
    fields = set(env_names().values())
    unknown = names - fields
    assert not unknown, f"env the code never reads: {sorted(unknown)}"
    env = env_of(container)
    env["BUDEVAL_NAMESPACE"] = "budeval"  # fieldRef metadata.namespace
    env["BUDEVAL_STORE_DSN"] = "http://x@clickhouse:8123/db"  # secretKeyRef
    settings = Settings.from_env(env)
    assert "x@clickhouse" not in repr(settings)  # the DSN is a secret
    assert settings.backend == "kubernetes" and settings.store_linger_ms == 50
    assert settings.sidecar == "external" and settings.host == "0.0.0.0" and settings.port == 8080
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert settings.resolved_results_root().as_posix() == mounts["results"]
    assert settings.data_dir.as_posix() == mounts["data"]
    pvc_volume = next(
        v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "results"
    )
    assert settings.results_pvc == pvc_volume["persistentVolumeClaim"]["claimName"]
    assert settings.archive_url.startswith("s3://")
    open_archive(settings.archive_url)  # the storage code accepts the URL the chart builds (no I/O yet)
    ns_env = next(e for e in container["env"] if e["name"] == "BUDEVAL_NAMESPACE")
    assert ns_env["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_kueue_gpu_example_reaches_the_service() -> None:
    docs = template(VALUE_SETS["kueue-gpu-nodes"])
    env = env_of(service_container(docs))
    assert env["BUDEVAL_DEFAULT_QUEUE"] == "evals"
    assert env["BUDEVAL_DEFAULT_GPU_RESOURCE_NAME"] == "nvidia.com/gpu"
    assert json.loads(env["BUDEVAL_DEFAULT_NODE_SELECTOR"]) == {
        "node.kubernetes.io/instance-type": "gpu-a100",
        "nvidia.com/gpu.present": "true",
    }
    assert json.loads(env["BUDEVAL_DEFAULT_TOLERATIONS"]) == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert env["BUDEVAL_RUNNER_IMAGE"] == "registry.example.com/ml/opencompass-runner:0.5.4-cu121"
    assert env["BUDEVAL_RESULTS_PVC"] == "shared-eval-results" and not find(docs, "PersistentVolumeClaim")
    assert env["BUDEVAL_RESULTS_ROOT"] == "/mnt/results"


def test_results_volume_is_rwx_and_kept() -> None:
    pvc = one(template(), "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pvc = one(template(sets=["results.storageClass=nfs", "results.size=2Ti"]), "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == "nfs" and pvc["spec"]["resources"]["requests"]["storage"] == "2Ti"


@pytest.mark.parametrize("values", VALUE_SETS, ids=list(VALUE_SETS))
def test_pods_are_hardened(values: str) -> None:
    docs = template(VALUE_SETS[values])
    specs = pod_specs(docs)
    assert {w.split("/")[0] for w, _ in specs} == {"Deployment", "Job"}
    for where, spec in specs:
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] > 0, where
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            writable = {m["mountPath"] for m in c["volumeMounts"]}
            assert "/tmp" in writable, f"{where}: a read-only root needs a writable /tmp"


def test_probes_and_port() -> None:
    docs = template()
    c = service_container(docs)
    assert c["args"] == ["serve"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    svc = one(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert svc["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]


# -- Dapr ---------------------------------------------------------------------------------------------------------
def test_dapr_annotations_and_components() -> None:
    docs = template()
    ann = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert ann["dapr.io/enabled"] == "true" and ann["dapr.io/app-id"] == "budeval"
    assert ann["dapr.io/app-port"] == "8080" and ann["dapr.io/app-protocol"] == "http"
    pubsub = one(docs, "Component", "budeval-pubsub")
    assert pubsub["spec"]["type"] == "pubsub.redis" and pubsub["scopes"] == ["budeval"]
    state = one(docs, "Component", "budeval-statestore")
    assert state["spec"]["type"] == "state.redis"
    assert {"name": "actorStateStore", "value": "true"} in state["spec"]["metadata"]
    env = env_of(service_container(docs))
    assert env["BUDEVAL_PUBSUB_NAME"] == pubsub["metadata"]["name"]
    assert (env["BUDEVAL_REQUEST_TOPIC"], env["BUDEVAL_EVENTS_TOPIC"]) == ("budeval.requests", "budeval.events")


def test_actor_state_store_flag_is_forced_once() -> None:
    docs = template(
        sets=["dapr.stateStore.metadata[0].name=actorStateStore", "dapr.stateStore.metadata[0].value=false"]
    )
    meta = one(docs, "Component", "budeval-statestore")["spec"]["metadata"]
    assert [m for m in meta if m["name"] == "actorStateStore"] == [{"name": "actorStateStore", "value": "true"}]


def test_kafka_and_postgres_components_from_example() -> None:
    docs = template(VALUE_SETS["kueue-gpu-nodes"])
    pubsub = one(docs, "Component", "budeval-pubsub")
    assert pubsub["spec"]["type"] == "pubsub.kafka"
    assert {"name": "saslPassword", "secretKeyRef": {"name": "kafka-budeval", "key": "password"}} in pubsub["spec"][
        "metadata"
    ]
    ann = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert ann["dapr.io/config"] == "tracing" and ann["dapr.io/app-token-secret"] == "budeval-dapr-app-token"


def test_without_dapr_the_embedded_sidecar_runs() -> None:
    docs = template(sets=["dapr.enabled=false"])
    assert not find(docs, "Component")
    ann = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert not any(k.startswith("dapr.io/") for k in ann)
    assert env_of(service_container(docs))["BUDEVAL_SIDECAR"] == "embedded"


# -- migrations ---------------------------------------------------------------------------------------------------
def test_migration_hook_job() -> None:
    docs = template()
    hooks = [d for d in docs if is_hook(d)]
    assert {(d["kind"], d["metadata"]["name"]) for d in hooks} == {
        ("ServiceAccount", "budeval-migrate"),
        ("Secret", "budeval-migrate"),
        ("Job", "budeval-migrate"),
    }
    weight = {d["kind"]: int(d["metadata"]["annotations"]["helm.sh/hook-weight"]) for d in hooks}
    assert weight["ServiceAccount"] < weight["Job"] and weight["Secret"] < weight["Job"], "account/secret first"
    job = one(docs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    spec = job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "budeval-migrate" and spec["automountServiceAccountToken"] is False
    container = spec["containers"][0]
    assert container["args"] == ["migrate"]
    assert container["image"] == service_container(docs)["image"]
    dsn = next(e for e in container["env"] if e["name"] == "BUDEVAL_STORE_DSN")
    assert dsn["valueFrom"]["secretKeyRef"] == {"name": "budeval-migrate", "key": "dsn"}
    migrate_secret = one(docs, "Secret", "budeval-migrate")
    assert migrate_secret["data"] == one(docs, "Secret", "budeval-clickhouse")["data"]
    assert not find(template(sets=["migrations.enabled=false"]), "Job")


def test_reading_credentials_from_secret_labels_is_opt_in() -> None:
    docs = template(sets=["security.credentialsFromSecretLabels=true"])
    assert rules_of(one(docs, "Role")) == {**EXPECTED_RULES, **SECRET_LABEL_RULES}
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in containers[0]["env"]}
    assert env["BUDEVAL_CREDENTIAL_SOURCE"] == "secrets"
    containers = one(template(), "Deployment")["spec"]["template"]["spec"]["containers"]
    default = {e["name"]: e.get("value") for e in containers[0]["env"]}
    assert default["BUDEVAL_CREDENTIAL_SOURCE"] == "settings" and default["BUDEVAL_CREDENTIALS"] == "{}"
