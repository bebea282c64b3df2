"""Driver of scripts/cluster_e2e.sh: one evaluation end to end in real pods of the chart's release.

    python scripts/cluster_e2e.py prepare --kubeconfig K --namespace NS --volume DIR --model DIR
    python scripts/cluster_e2e.py run --kubeconfig K --namespace NS --release R --eval-id ID --s3-endpoint URL
        --s3-access-key A --s3-secret-key S --bucket B

``prepare`` creates the namespace and a hostPath PV + PVC ``budeval-results`` over DIR (the results volume of the
service and the runner pods; models under ``_models``; the chart's chDB store under ``_clickhouse``). ``run``
publishes a request for the bundled ``light`` suite with the model from the volume through the service pod's sidecar
container ``daprd`` (``budeval submit --wait`` in the app container, over the apiserver's exec), records the runner
pods and Jobs while it runs, then checks: the pod's two containers (app and ``daprd``, none restarted), ``budeval
datasets check`` against the read-only datasets volume, the ``completed`` event, the scores read back through the
service's HTTP API (from chDB), the archive's ``manifest.json`` in S3, the runner pods' ServiceAccount and datasets
mount, and that the Jobs were cleaned up. Last line: ``cluster_e2e=ok completed_p50_s=<last Job complete ->
completed event>`` (one evaluation: the median of one sample).
Exit status 1 with the failed check on stderr.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import sys
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.stream import stream

RESULTS_MOUNT = "/var/lib/budeval/results"
MODEL_NAME = "SmolLM2-135M-Instruct"
RUN_SELECTOR = "app.kubernetes.io/managed-by=budeval,app.kubernetes.io/component=evaluation-run"


def fail(message: str) -> None:
    print(f"cluster_e2e.py: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def log(message: str) -> None:
    print(f"cluster_e2e.py: {message}", file=sys.stderr, flush=True)


def clients(kubeconfig: str) -> tuple[k8s.CoreV1Api, k8s.BatchV1Api]:
    api = k8s_config.new_client_from_config(config_file=kubeconfig)
    return k8s.CoreV1Api(api), k8s.BatchV1Api(api)


def ignore_exists(call: Any, *args: Any, **kwargs: Any) -> None:
    try:
        call(*args, **kwargs)
    except k8s.ApiException as exc:
        if exc.status != 409:
            raise


def prepare(args: argparse.Namespace) -> None:
    core, _ = clients(args.kubeconfig)
    volume = Path(args.volume)
    volume.mkdir(parents=True, exist_ok=True)
    volume.chmod(0o777)  # hostPath ignores fsGroup: the service and the runner (uid 1000) write here
    models = volume / "_models" / MODEL_NAME
    if not models.exists():
        shutil.copytree(args.model, models)
        for path in [models, *models.rglob("*")]:  # the runner reads it as uid 1000 (the cache may hold 0600 files)
            os.chown(path, 1000, 1000)
    ignore_exists(core.create_namespace, {"metadata": {"name": args.namespace}})
    pv = f"{args.namespace}-results"
    ignore_exists(
        core.create_persistent_volume,
        {
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(volume), "type": "Directory"},
            },
        },
    )
    ignore_exists(
        core.create_namespaced_persistent_volume_claim,
        args.namespace,
        {
            "metadata": {"name": "budeval-results"},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    )
    log(f"namespace {args.namespace}: results volume {volume} (PV {pv}), model {MODEL_NAME}")


class Recorder(threading.Thread):
    """Polls the evaluation's Jobs and pods while it runs: service accounts, Job completion times."""

    def __init__(self, core: k8s.CoreV1Api, batch: k8s.BatchV1Api, namespace: str) -> None:
        super().__init__(daemon=True)
        self.core, self.batch, self.namespace = core, batch, namespace
        self.service_accounts: dict[str, str] = {}
        self.datasets_mounts: dict[str, list[tuple[str, bool]]] = {}
        self.completed_at: dict[str, datetime] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for pod in self.core.list_namespaced_pod(self.namespace, label_selector=RUN_SELECTOR).items:
                    self.service_accounts[pod.metadata.name] = pod.spec.service_account_name
                    self.datasets_mounts[pod.metadata.name] = [
                        (m.mount_path, bool(m.read_only)) for m in pod.spec.containers[0].volume_mounts or []
                        if m.name == "datasets"
                    ]
                for job in self.batch.list_namespaced_job(self.namespace, label_selector=RUN_SELECTOR).items:
                    if job.status.completion_time is not None:
                        self.completed_at[job.metadata.name] = job.status.completion_time
            except Exception as exc:  # a transient API error must not end the recording
                log(f"recorder: {exc}")
            self.stop.wait(0.5)


def service_pod(core: k8s.CoreV1Api, namespace: str, release: str) -> Any:
    pods = core.list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/instance={release},app.kubernetes.io/component=service"
    ).items
    running = [p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]
    if not running:
        fail(f"no running service pod of release {release}")
    return running[0]


def exec_in(core: k8s.CoreV1Api, namespace: str, pod: str, command: list[str], timeout_s: int) -> tuple[int, str, str]:
    """Run ``command`` in the service pod's ``budeval`` container (the apiserver's exec); (exit status, out, err)."""
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        container="budeval",
        command=command,
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    out, err = [], []
    deadline = time.monotonic() + timeout_s + 60
    while resp.is_open() and time.monotonic() < deadline:
        resp.update(timeout=5)
        if resp.peek_stdout():
            out.append(resp.read_stdout())
        if resp.peek_stderr():
            err.append(resp.read_stderr())
    resp.close()
    code = resp.returncode if resp.returncode is not None else -1  # None: it did not end in time
    return int(code), "".join(out), "".join(err)


def submit(core: k8s.CoreV1Api, namespace: str, pod: str, request: dict[str, Any], timeout_s: int) -> dict[str, Any]:
    """``budeval submit - --wait --json`` inside the service container; returns the final event."""
    command = [
        "sh",
        "-c",
        'printf %s "$1" | budeval submit - --wait --json --timeout "$2"',
        "submit",
        json.dumps(request),
        str(timeout_s),
    ]
    code, text, err = exec_in(core, namespace, pod, command, timeout_s)
    if code != 0:
        fail(f"budeval submit exited {code}:\n{text[-3000:]}\n{err[-3000:]}")
    return dict(json.loads(text[text.index("{") :]))


def http_get(url: str, token: str) -> dict[str, Any]:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as answer:
        return dict(json.load(answer))


def check_archive(args: argparse.Namespace, eval_id: str) -> list[str]:
    from urllib.parse import urlparse

    from minio import Minio  # the archive's own client library

    url = urlparse(args.s3_endpoint)
    s3 = Minio(str(url.netloc), access_key=args.s3_access_key, secret_key=args.s3_secret_key, secure=False)
    keys = [str(o.object_name) for o in s3.list_objects(args.bucket, recursive=True)]
    manifests = [k for k in keys if eval_id in k and k.endswith("manifest.json")]
    if not manifests:
        fail(f"no archive manifest for {eval_id} in s3://{args.bucket} ({len(keys)} objects)")
    for key in manifests:
        answer = s3.get_object(args.bucket, key)
        try:
            manifest = json.loads(answer.read())
        finally:
            answer.close()
            answer.release_conn()
        if not manifest:
            fail(f"empty archive manifest {key}")
    return manifests


def check_pod_shape(pod: Any) -> None:
    """The service pod as the Dapr injector shapes it: the app container and a ``daprd`` container, both running,
    neither restarted."""
    names = [c.name for c in pod.spec.containers]
    if names != ["budeval", "daprd"]:
        fail(f"service pod containers {names}, expected ['budeval', 'daprd']")
    states = {c.name: (c.ready, c.restart_count) for c in pod.status.container_statuses or []}
    if states != {"budeval": (True, 0), "daprd": (True, 0)}:
        fail(f"service pod containers (ready, restarts): {states}")


def run(args: argparse.Namespace) -> None:
    core, batch = clients(args.kubeconfig)
    pod = service_pod(core, args.namespace, args.release)
    check_pod_shape(pod)
    token_secret = core.read_namespaced_secret(f"{args.release}-api-token", args.namespace)
    token = base64.b64decode(token_secret.data["token"]).decode()
    request = {
        "eval_id": args.eval_id,
        "suite": "light",
        "model": {
            "name": "smollm2-135m-instruct",
            "source": {"type": "huggingface", "path": f"{RESULTS_MOUNT}/_models/{MODEL_NAME}"},
        },
        "generation": {"max_out_len": 16},
        # CPU: the node's nvidia.com/gpu capacity is fake (it schedules GPU Jobs, see tests/k8s_node), and
        # OpenCompass's runner asserts that a run's num_gpus devices are visible before it starts a task.
        "resources": {"gpus": 0, "cpu": "1", "memory": "4Gi"},
        "timeout_s": args.timeout,
    }
    # The datasets volume: mounted in the service at COMPASS_DATA_CACHE, the default root of the check.
    code, out, err = exec_in(core, args.namespace, pod.metadata.name, ["budeval", "datasets", "check", "--suite",
                                                                       "light"], 120)
    if code != 0 or f"under {args.datasets_mount}" not in out:
        fail(f"budeval datasets check in the service pod exited {code}: {out[-2000:]} {err[-2000:]}")
    # Its own API client: kubernetes.stream swaps the request method of the client that runs the exec.
    recorder = Recorder(*clients(args.kubeconfig), args.namespace)
    recorder.start()
    log(f"publishing {args.eval_id} (suite light) through the daprd container of {pod.metadata.name}")
    event = submit(core, args.namespace, pod.metadata.name, request, args.timeout)
    recorder.stop.set()
    recorder.join()
    data = event.get("data") or {}
    if data.get("status") != "completed":
        fail(f"the evaluation ended {data.get('status')!r}: {json.dumps(event)[:3000]}")
    event_time = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
    if not recorder.completed_at:
        fail("no completed Job was seen while the evaluation ran")
    # The evaluation completes after its last run: that Job's completion -> the completed event.
    delays = [(event_time - max(recorder.completed_at.values())).total_seconds()]

    results = http_get(f"http://{pod.status.pod_ip}:8080/evals/{args.eval_id}/results", token)
    scores = results.get("scores") or []
    datasets = {s.get("dataset") for s in scores}
    if results.get("status") != "completed" or not {"tiny_qa", "tiny_mcq"} <= datasets:
        fail(f"scores read back from ClickHouse: {json.dumps(results)[:3000]}")
    manifests = check_archive(args, args.eval_id)
    check_pod_shape(core.read_namespaced_pod(pod.metadata.name, args.namespace))

    mounts = {tuple(v) for v in recorder.datasets_mounts.values()}
    if mounts != {((args.datasets_mount, True),)}:
        fail(f"runner pods' datasets mounts {mounts or 'nothing seen'}, expected {args.datasets_mount} read-only")
    accounts = set(recorder.service_accounts.values())
    if accounts != {args.runner_service_account}:
        fail(f"runner pods ran as {accounts or 'nothing seen'}, expected {args.runner_service_account}")
    deadline = time.monotonic() + 120
    while batch.list_namespaced_job(args.namespace, label_selector=RUN_SELECTOR).items:
        if time.monotonic() > deadline:
            fail("the evaluation's Jobs were not cleaned up within 120 s")
        time.sleep(1)
    log(
        f"scores {sorted((s['dataset'], s['metric'], s['score']) for s in scores)}; archive {manifests}; "
        f"runner pods {sorted(recorder.service_accounts)} as {args.runner_service_account} with the datasets volume "
        f"read-only at {args.datasets_mount}; Jobs cleaned up"
    )
    print(f"cluster_e2e=ok completed_p50_s={statistics.median(delays):.1f}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pp = sub.add_parser("prepare")
    pp.add_argument("--kubeconfig", required=True)
    pp.add_argument("--namespace", required=True)
    pp.add_argument("--volume", required=True)
    pp.add_argument("--model", required=True)
    pr = sub.add_parser("run")
    pr.add_argument("--kubeconfig", required=True)
    pr.add_argument("--namespace", required=True)
    pr.add_argument("--release", required=True)
    pr.add_argument("--eval-id", required=True)
    pr.add_argument("--runner-service-account", default="budeval-runner")
    pr.add_argument("--datasets-mount", default="/var/lib/budeval/datasets")
    pr.add_argument("--s3-endpoint", required=True)
    pr.add_argument("--s3-access-key", required=True)
    pr.add_argument("--s3-secret-key", required=True)
    pr.add_argument("--bucket", default="budeval-archive")
    pr.add_argument("--timeout", type=int, default=1800)
    args = p.parse_args(argv)
    prepare(args) if args.command == "prepare" else run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
