"""The chart's options for a plain cluster (issue 15): an embedded chDB store on the results volume without the
migration hook, a read-only datasets volume for stock OpenCompass data in the runner pods, and the Dapr sidecar as a
container of the service pod (the shape the Dapr injector produces)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
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


# -- the embedded sidecar as the pod's daprd container --------------------------------------------------------------
SIDECAR_CONTAINER = ["dapr.enabled=false", "dapr.embeddedSidecar.mode=container"]


def test_sidecar_container_has_the_injector_shape() -> None:
    docs = template(sets=SIDECAR_CONTAINER)
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    containers = deployment_containers(docs)
    assert list(containers) == ["budeval", "daprd"]
    app, daprd = containers["budeval"], containers["daprd"]
    assert daprd["image"] == app["image"]
    assert daprd["command"] == ["python", "-m", "budeval.sidecar"]
    assert {p["name"]: p["containerPort"] for p in daprd["ports"]} == {"dapr-http": 3500, "dapr-grpc": 50001}
    assert "--app-port=8080" in daprd["args"] and {"name": "http", "containerPort": 8080, "protocol": "TCP"} in app[
        "ports"
    ]
    # Dapr's app token from the same Secret in both, as daprd reads it (never a value in the pod spec).
    for container in (app, daprd):
        token = next(e for e in container["env"] if e["name"] == "APP_API_TOKEN")
        assert token["valueFrom"]["secretKeyRef"] == {"name": "budeval-app-token", "key": "token"}
    assert not [e for e in daprd["env"] if "value" in e]
    # The app in external mode, pointed at the sidecar on localhost, as under the injector.
    env = env_values(app)
    env["BUDEVAL_NAMESPACE"] = "budeval"
    settings = Settings.from_env(env)
    assert (settings.sidecar, settings.dapr_grpc_port, settings.dapr_http_port) == ("external", 50001, 3500)
    mounts = {m["name"]: m["mountPath"] for m in daprd["volumeMounts"]}
    assert daprd["args"][0] == f"--state={mounts['sidecar-state']}/sidecar.db"
    assert {"name": "sidecar-state", "emptyDir": {}} in spec["volumes"]
    assert daprd["securityContext"]["readOnlyRootFilesystem"] is True
    ann = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert not any(k.startswith("dapr.io/") for k in ann)
    for version in ("1.29.0", "1.33.0"):
        kubernetes_validate.validate(one(docs, "Deployment"), version, strict=True)


def test_sidecar_container_args_start_the_real_sidecar(tmp_path: Path) -> None:
    """The rendered arguments are ones the sidecar program accepts: it starts with them (state and ports moved to
    this test's own; later flags win) and reports where it listens."""
    daprd = deployment_containers(template(sets=SIDECAR_CONTAINER))["daprd"]
    argv = [sys.executable, *daprd["command"][1:], *daprd["args"],
            f"--state={tmp_path / 'sidecar.db'}", "--grpc-port=0", "--http-port=0", "--app-port=0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "BUDEVAL_"))}
    env["APP_API_TOKEN"] = "sidecar-container-token"
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        ports = json.loads(proc.stdout.readline())
        assert ports["grpc_port"] > 0 and ports["http_port"] > 0
        answer = httpx.get(f"http://127.0.0.1:{ports['http_port']}/v1.0/healthz/outbound", timeout=10)
        assert answer.is_success
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_default_and_daprd_modes_have_one_container() -> None:
    assert list(deployment_containers(template(sets=["dapr.enabled=false"]))) == ["budeval"]
    # Under real daprd the option is ignored: the injector adds the sidecar.
    docs = template(sets=["dapr.embeddedSidecar.mode=container"])
    assert list(deployment_containers(docs)) == ["budeval"]
    assert env_values(deployment_containers(docs)["budeval"])["BUDEVAL_SIDECAR"] == "external"
    assert "DAPR_GRPC_PORT" not in env_values(deployment_containers(docs)["budeval"])
    with pytest.raises(HelmError) as err:
        template(sets=["dapr.enabled=false", "dapr.embeddedSidecar.mode=pod"])
    assert "dapr.embeddedSidecar.mode" in err.value.stderr
