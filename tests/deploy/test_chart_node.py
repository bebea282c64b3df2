"""The chart's options for a plain cluster (issue 15): an embedded chDB store on the results volume without the
migration hook, a read-only datasets volume for stock OpenCompass data in the runner pods, and the Dapr sidecar as a
container of the service pod (the shape the Dapr injector produces)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes import client as k8s

from budeval.backends.kubernetes import KubernetesBackend
from budeval.config import Settings
from tests.deploy.helm import HelmError, find, is_hook, one, template
from tests.k8s.specs import hf_spec

CHDB = "chdb:///var/lib/budeval/results/_clickhouse"


def deployment_containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]}


def env_values(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


# -- embedded chDB on the results volume ----------------------------------------------------------------------------
def test_chdb_dsn_is_accepted_and_needs_no_hook() -> None:
    docs = template(sets=[f"clickhouse.dsn={CHDB}"])
    assert not [d for d in docs if is_hook(d)], "the service migrates an embedded store itself"
    assert not find(docs, "Job")
    secret = one(docs, "Secret", "budeval-clickhouse")
    assert base64.b64decode(secret["data"]["dsn"]).decode() == CHDB
    # The DSN is one the service accepts, in a folder of the results volume it mounts.
    container = deployment_containers(docs)["budeval"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert CHDB.removeprefix("chdb://").startswith(mounts["results"] + "/")
    assert Settings(store_dsn=CHDB).resolved_store_dsn() == CHDB


def test_a_server_dsn_keeps_the_hook() -> None:
    assert find(template(), "Job", "budeval-migrate")
    assert find(template(sets=["clickhouse.existingSecret=ch"]), "Job", "budeval-migrate")
    assert not find(template(sets=["clickhouse.existingSecret=ch", "migrations.enabled=false"]), "Job")


# -- the stock datasets' volume -------------------------------------------------------------------------------------
def pod_volumes(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}


def test_datasets_volume_reaches_the_service_and_its_runner_jobs() -> None:
    for given, source in (
        ("datasets.existingClaim=stock-data", {"persistentVolumeClaim": {"claimName": "stock-data", "readOnly": True}}),
        ("datasets.hostPath=/srv/compass", {"hostPath": {"path": "/srv/compass", "type": "Directory"}}),
    ):
        docs = template(sets=[given])
        assert pod_volumes(docs)["datasets"] == {"name": "datasets", **source}
        container = deployment_containers(docs)["budeval"]
        assert {"name": "datasets", "mountPath": "/var/lib/budeval/datasets", "readOnly": True} in container[
            "volumeMounts"
        ]
        env = env_values(container)
        env["BUDEVAL_NAMESPACE"] = "budeval"
        settings = Settings.from_env(env)
        assert settings.compass_data_cache == "/var/lib/budeval/datasets"
        # The Jobs the service then creates mount the same volume read-only as COMPASS_DATA_CACHE.
        _, job = KubernetesBackend(settings, k8s.ApiClient()).manifests(hf_spec("eval-chart", gpus=0))
        pod = job["spec"]["template"]["spec"]
        assert {"name": "datasets", **source} in pod["volumes"]
        runner_env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert runner_env["COMPASS_DATA_CACHE"] == "/var/lib/budeval/datasets"


def test_no_datasets_volume_by_default() -> None:
    docs = template()
    assert "datasets" not in pod_volumes(docs)
    assert "COMPASS_DATA_CACHE" not in env_values(deployment_containers(docs)["budeval"])


def test_datasets_claim_and_host_path_together_are_refused() -> None:
    with pytest.raises(HelmError) as err:
        template(sets=["datasets.existingClaim=a", "datasets.hostPath=/b"])
    assert "datasets" in err.value.stderr
    with pytest.raises(HelmError):
        template(sets=["datasets.hostPath=relative/path"])
