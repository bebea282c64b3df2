"""The Kubernetes objects of one run (ConfigMap + batch/v1 Job) as plain dicts: pure, so tests validate them offline.

Layout on the shared results PVC, which the controller mounts at ``results_root`` and every runner pod mounts at
the same path (so a path means the same thing in both):

- ``{results_root}/{eval_id}/{run_id}/`` OpenCompass ``--work-dir`` of the run (timestamp folders inside);
- ``{results_root}/_cache/huggingface`` Hugging Face cache (``HF_HOME``), ``{results_root}/_cache/datasets``
  OpenCompass dataset cache (``COMPASS_DATA_CACHE``) unless a read-only datasets volume (:func:`datasets_volume`)
  is mounted. ``_`` can never start an eval id (a DNS label).

The API key of an endpoint model is only a ``secretKeyRef``: no value of it exists anywhere in these manifests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from budeval.backends.base import RunSpec
from budeval.engine.environment import CAPTURE_SCRIPT
from budeval.errors import ValidationError
from budeval.schemas.ids import check_dns_label

#: Label values that mark every object budeval creates for a run; the watcher's selector uses them.
MANAGED_BY = "budeval"
COMPONENT = "evaluation-run"
LABEL_EVAL = "budeval.io/eval-id"
LABEL_RUN = "budeval.io/run-id"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
ANNOTATION_CONFIG_HASH = "budeval.io/config-hash"
RUN_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY},app.kubernetes.io/component={COMPONENT}"

CONTAINER = "opencompass"
CONFIG_KEY = "config.py"
CONFIG_MOUNT = "/etc/budeval/run"
#: Environment variable OpenCompass's OpenAI-compatible models read for the key (``key='ENV'`` in the config).
API_KEY_ENV = "OPENAI_API_KEY"
RUNNER_UID = 1000
#: The pod's private scratch space: an emptyDir, not a shared host directory.
POD_TMP = "/tmp"  # noqa: S108

_MAX_NAME = 63


def job_name(eval_id: str, run_id: str) -> str:
    """``{eval_id}-{run_id}``, or a hashed shortening of it: Job names become pod label values (at most 63)."""
    check_dns_label(eval_id, "eval_id")
    check_dns_label(run_id, "run_id")
    name = f"{eval_id}-{run_id}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = _MAX_NAME - len(digest) - len(run_id) - 2
    return f"{eval_id[:keep].rstrip('-')}-{digest}-{run_id}"


def config_map_name(eval_id: str, run_id: str) -> str:
    return job_name(eval_id, run_id)


def run_labels(eval_id: str, run_id: str, engine_version: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "opencompass",
        "app.kubernetes.io/instance": job_name(eval_id, run_id),
        "app.kubernetes.io/version": engine_version,
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/part-of": "budeval",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_EVAL: eval_id,
        LABEL_RUN: run_id,
    }


def eval_selector(eval_id: str) -> str:
    return f"{RUN_SELECTOR},{LABEL_EVAL}={check_dns_label(eval_id, 'eval_id')}"


def work_dir(results_root: PurePosixPath | str, eval_id: str, run_id: str) -> PurePosixPath:
    return PurePosixPath(str(results_root)) / check_dns_label(eval_id, "eval_id") / check_dns_label(run_id, "run_id")


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: The largest rendered config a run's ConfigMap carries: Kubernetes refuses a ConfigMap whose data exceeds 1 MiB
#: (``MaxSecretSize``/``ConfigMap`` validation, 1,048,576 bytes); a margin is kept for the key and the metadata.
CONFIG_MAP_LIMIT_BYTES = 1_048_576 - 16 * 1024


def config_map(spec: RunSpec, *, namespace: str, engine_version: str) -> dict[str, Any]:
    """The run's ConfigMap (its rendered OpenCompass config under :data:`CONFIG_KEY`).

    Raises :class:`~budeval.errors.ValidationError` when the config is larger than :data:`CONFIG_MAP_LIMIT_BYTES` --
    a re-judging run carries the earlier evaluation's predictions in its config -- before the apiserver would refuse
    it with a less telling 422."""
    size = len(spec.config_text.encode("utf-8"))
    if size > CONFIG_MAP_LIMIT_BYTES:
        raise ValidationError(
            f"run {spec.run_id}: its rendered OpenCompass config is {size:,} bytes, more than a Kubernetes ConfigMap "
            f"holds ({CONFIG_MAP_LIMIT_BYTES:,}); split the request into fewer datasets per run (a rejudge carries "
            "every stored prediction of its datasets)",
            field="datasets",
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(spec.eval_id, spec.run_id),
            "namespace": namespace,
            "labels": run_labels(spec.eval_id, spec.run_id, engine_version),
            "annotations": {ANNOTATION_CONFIG_HASH: config_hash(spec.config_text)},
        },
        "data": {CONFIG_KEY: spec.config_text},
    }


def owner_reference(job: dict[str, Any]) -> dict[str, Any]:
    """Makes the ConfigMap a dependent of the Job: deleting the Job garbage-collects it."""
    meta = job["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


#: ``sh -c`` prologue of a run: the run captures its own environment into ``{work}/.budeval/environment.json``
#: (budeval.engine.environment; a failed capture never fails the run), then runs OpenCompass as its child and passes
#: SIGTERM/SIGINT on to it; the exit status is OpenCompass's. Not ``exec``: the container's PID 1 gets the pod's
#: SIGTERM (a deadline, a cancel), and the kernel drops a signal PID 1 has no handler for -- OpenCompass installs
#: none, so an exec'd OpenCompass ran on until the grace period's SIGKILL. When sh exits, the kernel kills whatever
#: else is left in the container (OpenCompass's task subprocesses). ``BUDEVAL_USAGE_DIR`` names
#: ``{work}/.budeval/usage`` (an endpoint model's usage lines, budeval_usage.py).
_CAPTURE_PROLOGUE = (
    "child=; stop=; trap 'stop=1; [ -z \"$child\" ] || kill -TERM \"$child\" 2>/dev/null' TERM INT; "
    'capture="$1"; work="$2"; shift 2; meta="$work/.budeval"; BUDEVAL_USAGE_DIR="$meta/usage"; '
    'export BUDEVAL_USAGE_DIR; '
    'mkdir -p "$meta" && python -c "$capture" >"$meta/environment.json.tmp" 2>/dev/null '
    '&& mv "$meta/environment.json.tmp" "$meta/environment.json" || rm -f "$meta/environment.json.tmp"; '
    '"$@" & child=$!; [ -z "$stop" ] || kill -TERM "$child" 2>/dev/null; '
    'while :; do wait "$child"; status=$?; kill -0 "$child" 2>/dev/null || exit "$status"; done'
)


def runner_command(spec: RunSpec, results_root: PurePosixPath | str) -> list[str]:
    """The command of a run: the environment capture, then OpenCompass reading its config from the mounted
    ConfigMap (``python -m opencompass.cli.main CONFIG --work-dir WORK ...``, the tail of the list)."""
    workers = max(1, spec.resources.gpus)
    work = str(work_dir(results_root, spec.eval_id, spec.run_id))
    return [
        "sh",
        "-c",
        _CAPTURE_PROLOGUE,
        "budeval-run",
        CAPTURE_SCRIPT,
        work,
        "python",
        "-m",
        "opencompass.cli.main",
        f"{CONFIG_MOUNT}/{CONFIG_KEY}",
        "--work-dir",
        work,
        "--max-num-workers",
        str(workers),
    ]


def _resources(spec: RunSpec) -> dict[str, dict[str, str]]:
    res = spec.resources
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.gpus > 0:
        # Extended resources must have requests == limits.
        requests[res.gpu_resource_name] = limits[res.gpu_resource_name] = str(res.gpus)
    if res.cpu is not None:
        requests["cpu"] = res.cpu  # no CPU limit: throttling slows inference and protects nothing here
    if res.memory is not None:
        requests["memory"] = limits["memory"] = res.memory
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _tolerations(spec: RunSpec) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in spec.resources.tolerations:
        item: dict[str, Any] = {"operator": t.operator}
        if t.key is not None:
            item["key"] = t.key
        if t.value is not None:
            item["value"] = t.value
        if t.effect is not None:
            item["effect"] = t.effect
        if t.toleration_seconds is not None:
            item["tolerationSeconds"] = t.toleration_seconds
        out.append(item)
    return out


@dataclass(frozen=True)
class DatasetsVolume:
    """The read-only volume of OpenCompass's stock dataset files in every runner pod: ``source`` is the pod volume's
    source (``{"persistentVolumeClaim": ...}`` or ``{"hostPath": ...}``), mounted at ``mount_path``, the pods'
    ``COMPASS_DATA_CACHE``."""

    source: dict[str, Any]
    mount_path: PurePosixPath


def datasets_volume(pvc: str, host_path: str, mount_path: str) -> DatasetsVolume | None:
    """The datasets volume of the settings ``datasets_pvc`` / ``datasets_host_path`` / ``compass_data_cache``; None
    when neither is set. Raises ValidationError for both at once, a relative host path, or a mount path
    (``COMPASS_DATA_CACHE``) that is unset or relative."""
    if not pvc and not host_path:
        return None
    if pvc and host_path:
        raise ValidationError("give datasets_pvc or datasets_host_path, not both", "datasets_pvc")
    where = PurePosixPath(mount_path) if mount_path else None
    if where is None or not where.is_absolute():
        raise ValidationError(
            f"a datasets volume needs an absolute COMPASS_DATA_CACHE to mount it at, got {mount_path!r}",
            "compass_data_cache",
        )
    if pvc:
        source: dict[str, Any] = {"persistentVolumeClaim": {"claimName": pvc, "readOnly": True}}
    else:
        if not PurePosixPath(host_path).is_absolute():
            raise ValidationError(f"must be an absolute path on the node, got {host_path!r}", "datasets_host_path")
        source = {"hostPath": {"path": host_path, "type": "Directory"}}
    return DatasetsVolume(source=source, mount_path=where)


def _env(spec: RunSpec, results_root: PurePosixPath, datasets: DatasetsVolume | None) -> list[dict[str, Any]]:
    cache = results_root / "_cache"
    data_cache = datasets.mount_path if datasets is not None else cache / "datasets"
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": POD_TMP},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "HF_HOME", "value": str(cache / "huggingface")},
        {"name": "COMPASS_DATA_CACHE", "value": str(data_cache)},
        {"name": "BUDEVAL_EVAL_ID", "value": spec.eval_id},
        {"name": "BUDEVAL_RUN_ID", "value": spec.run_id},
        # The node the run landed on, for its captured environment (provenance).
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    source = spec.keyed_source()
    if source is not None and source.api_key_secret is not None:
        ref = source.api_key_secret
        env.append(
            {"name": API_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key, "optional": False}}}
        )
    return env


def job(
    spec: RunSpec,
    *,
    namespace: str,
    image: str,
    service_account: str,
    results_pvc: str,
    results_root: PurePosixPath | str,
    engine_version: str,
    backoff_limit: int,
    ttl_after_finished_s: int,
    datasets: DatasetsVolume | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job of one run; every field comes from the spec or the backend's settings. ``datasets``: the
    stock datasets' volume (:func:`datasets_volume`), mounted read-only; None: the cache on the results volume."""
    root = PurePosixPath(str(results_root))
    if not root.is_absolute():
        raise ValidationError(f"must be an absolute path to mount the results PVC at, got {root}", "results_root")
    labels = run_labels(spec.eval_id, spec.run_id, engine_version)
    res = spec.resources
    if res.queue is not None:
        labels[LABEL_QUEUE] = res.queue
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "fsGroup": RUNNER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": CONTAINER,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": runner_command(spec, root),
                "workingDir": POD_TMP,
                "env": _env(spec, root, datasets),
                "resources": _resources(spec),
                "securityContext": {
                    "runAsNonRoot": True,
                    "allowPrivilegeEscalation": False,
                    "privileged": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
                    {"name": "results", "mountPath": str(root)},
                    {"name": "tmp", "mountPath": POD_TMP},
                ],
            }
        ],
        "volumes": [
            {
                "name": "config",
                "configMap": {
                    "name": config_map_name(spec.eval_id, spec.run_id),
                    "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}],
                },
            },
            {"name": "results", "persistentVolumeClaim": {"claimName": results_pvc}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if datasets is not None:
        pod_spec["containers"][0]["volumeMounts"].append(
            {"name": "datasets", "mountPath": str(datasets.mount_path), "readOnly": True}
        )
        pod_spec["volumes"].append({"name": "datasets", **datasets.source})
    if res.node_selector:
        pod_spec["nodeSelector"] = dict(res.node_selector)
    tolerations = _tolerations(spec)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if res.priority_class is not None:
        pod_spec["priorityClassName"] = res.priority_class
    job_spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "activeDeadlineSeconds": max(1, spec.timeout_s),
        "ttlSecondsAfterFinished": ttl_after_finished_s,
        "completions": 1,
        "parallelism": 1,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if res.queue is not None:
        # Kueue admits a queued Job by unsuspending it (a field v1.20 lacks and drops; Kueue needs 1.22+).
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(spec.eval_id, spec.run_id),
            "namespace": namespace,
            "labels": labels,
            "annotations": {ANNOTATION_CONFIG_HASH: config_hash(spec.config_text)},
        },
        "spec": job_spec,
    }
