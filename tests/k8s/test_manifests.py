"""The manifests the backend emits: fields from the request, hardening, secrets by reference, schema-valid."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes import client as k8s

from budeval.backends.kubernetes import KubernetesBackend
from budeval.backends.kubernetes import manifests as m
from budeval.config import Settings
from budeval.errors import UnsafeIdError, ValidationError
from tests.k8s.specs import endpoint_spec, hf_spec
from tests.support import wait_until

VERSIONS = ("1.29", "1.33")


def full_spec() -> Any:
    return hf_spec(
        "eval-manifests",
        "r3",
        timeout_s=7200,
        gpus=2,
        gpu_resource_name="amd.com/gpu",
        cpu="8",
        memory="64Gi",
        node_selector={"gpu.type": "a100"},
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        priority_class="eval-low",
        queue="team-a",
    )


def backend(tmp_path: Path) -> KubernetesBackend:
    settings = Settings(data_dir=tmp_path, results_root=Path("/results"), namespace="evals")
    return KubernetesBackend(settings, k8s.ApiClient(), backoff_limit=2, ttl_after_finished_s=3600)


def with_owner(cm: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    owned: dict[str, Any] = json.loads(json.dumps(cm))
    job = dict(job, metadata=dict(job["metadata"], uid="0e5f2a7e-64b2-4c11-9a30-5d2f5f1f1c11"))
    owned["metadata"]["ownerReferences"] = [m.owner_reference(job)]
    return owned


def emitted(tmp_path: Path) -> list[dict[str, Any]]:
    b = backend(tmp_path)
    out: list[dict[str, Any]] = []
    for spec in (full_spec(), endpoint_spec("eval-endpoint"), hf_spec("eval-plain", gpus=0)):
        cm, job = b.manifests(spec)
        out += [with_owner(cm, job), job]
    return out


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_with_strict_schema(tmp_path: Path, version: str) -> None:
    for obj in emitted(tmp_path):
        kubernetes_validate.validate(obj, version, strict=True)


def test_kubernetes_validate_cli_strict_accepts_them_and_rejects_a_typo(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump_all(emitted(tmp_path)))
    bad_job = emitted(tmp_path)[1]
    bad_job["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # typo: an unknown field
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(bad_job))
    cli = shutil.which("kubernetes-validate") or str(Path(sys.executable).parent / "kubernetes-validate")
    for version in VERSIONS:
        ok = subprocess.run([cli, "--strict", "-k", version, str(good)], capture_output=True, text=True, check=False)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        no = subprocess.run([cli, "--strict", "-k", version, str(bad)], capture_output=True, text=True, check=False)
        assert no.returncode != 0, "a strict validation that accepts unknown fields proves nothing"


def test_job_carries_resources_scheduling_and_lifecycle_fields(tmp_path: Path) -> None:
    cm, job = backend(tmp_path).manifests(full_spec())
    spec = job["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["requests"]["amd.com/gpu"] == container["resources"]["limits"]["amd.com/gpu"] == "2"
    assert container["resources"]["requests"]["cpu"] == "8"
    assert container["resources"]["requests"]["memory"] == container["resources"]["limits"]["memory"] == "64Gi"
    assert pod["nodeSelector"] == {"gpu.type": "a100"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "eval-low"
    assert job["metadata"]["labels"][m.LABEL_QUEUE] == "team-a"
    assert spec["backoffLimit"] == 2
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert container["image"] == Settings().runner_image
    labels = job["metadata"]["labels"]
    assert labels[m.LABEL_EVAL] == "eval-manifests" and labels[m.LABEL_RUN] == "r3"
    assert labels["app.kubernetes.io/managed-by"] == "budeval"
    assert labels["app.kubernetes.io/part-of"] == "budeval"
    assert spec["template"]["metadata"]["labels"][m.LABEL_EVAL] == "eval-manifests"
    # The OpenCompass command reads the ConfigMap and writes to {results_root}/{eval_id}/{run_id} on the PVC.
    command = container["command"]
    tail = command[command.index("python"):]
    assert tail[:4] == ["python", "-m", "opencompass.cli.main", "/etc/budeval/run/config.py"]
    # Before it, the run captures its environment into its own folder (budeval.engine.environment).
    assert command[:2] == ["sh", "-c"] and command[command.index("budeval-run") + 2] == "/results/eval-manifests/r3"
    assert container["command"][container["command"].index("--work-dir") + 1] == "/results/eval-manifests/r3"
    mounts = {v["name"]: v["mountPath"] for v in container["volumeMounts"]}
    assert mounts["results"] == "/results"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["results"]["persistentVolumeClaim"]["claimName"] == Settings().results_pvc
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HF_HOME"] == "/results/_cache/huggingface"
    assert env["COMPASS_DATA_CACHE"] == "/results/_cache/datasets"
    assert cm["data"][m.CONFIG_KEY] == full_spec().config_text


def test_pod_is_hardened(tmp_path: Path) -> None:
    _, job = backend(tmp_path).manifests(full_spec())
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["serviceAccountName"] == Settings().runner_service_account
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_api_key_only_as_secret_key_ref(tmp_path: Path) -> None:
    _, job = backend(tmp_path).manifests(endpoint_spec("eval-endpoint", secret="llm-api", key="token"))
    container = job["spec"]["template"]["spec"]["containers"][0]
    keyed = [e for e in container["env"] if e["name"] == m.API_KEY_ENV]
    assert keyed == [
        {"name": m.API_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": "llm-api", "key": "token", "optional": False}}}
    ]
    assert all("value" not in e for e in keyed)


def test_an_endpoint_run_is_a_small_cpu_pod_without_gpu(tmp_path: Path) -> None:
    """An endpoint request that says nothing about resources, through the workflow's own rendering: no GPU request
    or limit, the operator's small CPU/memory defaults; a request asking for a GPU or more CPU gets what it asks."""
    from budeval.schemas.request import EvalRequest
    from budeval.workflow.activities import plan_runs, render_plans

    settings = Settings(data_dir=tmp_path, results_root=Path("/results"), namespace="evals")
    source = {"type": "openai", "base_url": "https://llm.example/v1", "model": "gpt-test"}

    def job_resources(**extra: Any) -> dict[str, Any]:
        request = EvalRequest.model_validate(
            {"eval_id": "eval-endpoint", "model": {"name": "gpt", "source": source}, "datasets": ["tiny_qa"], **extra}
        )
        (spec,) = render_plans(request, plan_runs(request, ["tiny_qa"]), settings).specs
        _, job = backend(tmp_path).manifests(spec)
        (container,) = job["spec"]["template"]["spec"]["containers"]
        return dict(container["resources"])

    plain = job_resources()
    assert plain == {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    assert not any("gpu" in name for part in plain.values() for name in part)
    asked = job_resources(resources={"gpus": 1, "cpu": "4"})
    assert asked["requests"] == {"nvidia.com/gpu": "1", "cpu": "4", "memory": "2Gi"}
    hf = EvalRequest.model_validate(
        {"eval_id": "eval-hf", "model": {"name": "m", "source": {"type": "huggingface", "path": "org/m"}},
         "datasets": ["tiny_qa"]}
    )
    (spec,) = render_plans(hf, plan_runs(hf, ["tiny_qa"]), settings).specs
    assert spec.resources.gpus == 1 and spec.resources.cpu is None  # a Hugging Face run keeps its GPU default


def test_long_ids_give_a_stable_short_job_name() -> None:
    eval_id = "e" * 63
    name = m.job_name(eval_id, "r12")
    assert len(name) <= 63 and name.endswith("-r12") and name == m.job_name(eval_id, "r12")
    assert m.job_name(eval_id, "r13") != name
    with pytest.raises(UnsafeIdError):
        m.job_name("../etc", "r0")


def test_the_job_command_captures_the_environment_then_runs_opencompass(tmp_path: Path) -> None:
    """The Job's command run by a real sh, with `python` the test interpreter (no OpenCompass in it): the capture
    lands in the run's folder and the OpenCompass command line run is the tail of the list, unchanged."""
    work = tmp_path / "results" / "eval-env" / "r0"
    spec = hf_spec("eval-env", "r0")
    command = m.runner_command(spec, tmp_path / "results")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "NODE_NAME": "gpu-node-7"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "opencompass.cli.main" in done.stderr  # ran: python -m opencompass... (its status)
    from budeval.engine.environment import read_environment

    captured = read_environment(work)
    assert captured["node"] == "gpu-node-7" and captured["python"] == ".".join(map(str, sys.version_info[:3]))
    assert captured["gpu_count"] == 0 and captured["hostname"]


def test_the_job_command_as_pid1_stops_opencompass_on_sigterm(tmp_path: Path) -> None:
    """The pod's SIGTERM (a deadline, a cancel) reaches OpenCompass: the Job's command runs as PID 1 of its own PID
    namespace (``unshare``, as in a container) with a ``python`` whose OpenCompass never ends and installs no signal
    handler. Before, the command ``exec``ed OpenCompass as PID 1, the kernel dropped the SIGTERM and the run went on
    until the grace period's SIGKILL."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.fail("needs root and unshare (a PID namespace, as a container has)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python"  # the capture (-c) runs; "OpenCompass" just sleeps, as a long run does
    fake.write_text(f'#!/bin/sh\n[ "$1" = -c ] && exec {sys.executable} "$@"\nexec sleep 600\n')
    fake.chmod(0o755)
    command = m.runner_command(hf_spec("eval-term", "r0"), tmp_path / "results")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", *command], env=env)
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        pid1 = int(wait_until(lambda: children.read_text().split(), "the command's PID 1", timeout=30)[0])
        inner = Path(f"/proc/{pid1}/task/{pid1}/children")

        def sleeping() -> bool:  # OpenCompass (here: sleep) runs: PID 1 itself (exec'd) or the shell's child
            pids = [str(pid1), *inner.read_text().split()]
            return any(Path(f"/proc/{c}/cmdline").read_bytes().startswith(b"sleep") for c in pids)

        wait_until(sleeping, "the run to start", timeout=120)
        os.kill(pid1, signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM  # OpenCompass's own status: killed by SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- the stock datasets' volume ------------------------------------------------------------------------------------
def _pod(settings: Settings) -> dict[str, Any]:
    _, job = KubernetesBackend(settings, k8s.ApiClient()).manifests(hf_spec("eval-data", gpus=0))
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def _env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["containers"][0]["env"] if "value" in e}


@pytest.mark.parametrize(
    ("given", "source"),
    [
        ({"datasets_pvc": "stock-data"}, {"persistentVolumeClaim": {"claimName": "stock-data", "readOnly": True}}),
        ({"datasets_host_path": "/srv/compass"}, {"hostPath": {"path": "/srv/compass", "type": "Directory"}}),
    ],
    ids=["pvc", "host-path"],
)
def test_datasets_volume_is_mounted_read_only_as_the_data_cache(
    tmp_path: Path, given: dict[str, str], source: dict[str, Any]
) -> None:
    settings = Settings(data_dir=tmp_path, results_root=Path("/results"), compass_data_cache="/data/compass", **given)
    pod = _pod(settings)
    assert {"name": "datasets", **source} in pod["volumes"]
    assert {"name": "datasets", "mountPath": "/data/compass", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert _env(pod)["COMPASS_DATA_CACHE"] == "/data/compass"
    for version in VERSIONS:
        _, job = KubernetesBackend(settings, k8s.ApiClient()).manifests(hf_spec("eval-data", gpus=0))
        kubernetes_validate.validate(job, version, strict=True)


def test_without_a_datasets_volume_the_cache_is_on_the_results_volume(tmp_path: Path) -> None:
    pod = _pod(Settings(data_dir=tmp_path, results_root=Path("/results"), compass_data_cache="/data/compass"))
    assert not [v for v in pod["volumes"] if v["name"] == "datasets"]
    assert _env(pod)["COMPASS_DATA_CACHE"] == "/results/_cache/datasets"


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"datasets_pvc": "a", "datasets_host_path": "/b", "compass_data_cache": "/c"}, "datasets_pvc"),
        ({"datasets_pvc": "stock-data"}, "compass_data_cache"),
        ({"datasets_pvc": "stock-data", "compass_data_cache": "data"}, "compass_data_cache"),
        ({"datasets_host_path": "srv/compass", "compass_data_cache": "/c"}, "datasets_host_path"),
    ],
    ids=["both", "no-mount-path", "relative-mount-path", "relative-host-path"],
)
def test_bad_datasets_volume_settings_are_refused(tmp_path: Path, given: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        KubernetesBackend(Settings(data_dir=tmp_path, **given), k8s.ApiClient())
    assert err.value.field == field


def test_a_config_larger_than_a_configmap_holds_is_refused_before_the_apiserver() -> None:
    """A re-judging run carries the earlier evaluation's predictions in its config: past 1 MiB the apiserver would
    answer 422 "Too long"; the manifest refuses it first, naming the size and what to do."""
    small = hf_spec("eval-big")
    assert m.config_map(small, namespace="ns", engine_version="v")["data"]
    big = small.model_copy(update={"config_text": small.config_text + "# " + "x" * m.CONFIG_MAP_LIMIT_BYTES + "\n"})
    with pytest.raises(ValidationError, match=r"more than a Kubernetes ConfigMap holds"):
        m.config_map(big, namespace="ns", engine_version="v")
