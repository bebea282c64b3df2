#!/usr/bin/env python3
"""Benchmark: API requests and CPU budeval spends to monitor many concurrent Jobs, against per-eval polling.

Starts the real kube-apiserver (scripts/kube/apiserver.sh), submits N runs through KubernetesBackend into a fresh
namespace, and lets the fake kubelet (tests/k8s/kubelet.py) complete them at random times over SPAN seconds. In the
same run and over the same span:

- the shared watcher (``KubernetesBackend.watch``) runs in a child process with its own counting ApiClient, until it
  has reported every run; its requests and CPU seconds are what budeval pays to monitor;
- a poller calls ``KubernetesBackend.get`` for every unfinished evaluation every POLL seconds from its submission on
  (what a per-evaluation status poll would cost), with another counting ApiClient.

A fraction of the runs crash (``--fail-fraction``, default 0.1): both sides then read the pod's log once.

Last line: ``requests_per_eval=<float> cpu_s=<float> polling_requests_per_eval=<float>``. Target: <= 3 per eval.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402

from budeval.backends.base import RunState  # noqa: E402
from budeval.backends.kubernetes import KubernetesBackend  # noqa: E402
from budeval.backends.kubernetes import manifests as m  # noqa: E402
from budeval.backends.kubernetes.api import JsonApi  # noqa: E402
from budeval.config import Settings  # noqa: E402
from budeval.logs import configure as configure_logs  # noqa: E402

SCRIPT = REPO / "scripts" / "kube" / "apiserver.sh"
RUNNER_SA = "budeval-runner"


class CountingApiClient(k8s.ApiClient):  # type: ignore[misc]  # the client is untyped
    """Counts every request made through it (a watch stream is one request)."""

    def __init__(self, configuration: k8s.Configuration) -> None:
        super().__init__(configuration)
        self.requests = 0
        self._count_lock = threading.Lock()

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        with self._count_lock:
            self.requests += 1
        return super().call_api(*args, **kwargs)


def client(kubeconfig: str, counting: bool = False) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    return CountingApiClient(configuration) if counting else k8s.ApiClient(configuration)


def settings_for(namespace: str, results_root: str) -> Settings:
    return Settings(
        namespace=namespace,
        results_root=Path(results_root),
        runner_service_account=RUNNER_SA,
        unschedulable_after_s=600.0,
    )


def watch_child(kubeconfig: str, namespace: str, results_root: str, expected: int) -> int:
    """Child process: run the shared watcher until every run was reported; print its cost as JSON."""
    api = client(kubeconfig, counting=True)
    backend = KubernetesBackend(settings_for(namespace, results_root), api)
    done: set[str] = set()
    finished = threading.Event()
    lock = threading.Lock()

    def on_finished(state: RunState) -> None:
        with lock:
            done.add(f"{state.eval_id}/{state.run_id}")
            if len(done) >= expected:
                finished.set()

    cpu0, wall0 = time.process_time(), time.monotonic()
    watcher = backend.watcher(on_finished)
    watcher.start()
    print("ready", flush=True)
    finished.wait()
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    watcher.stop()
    print(json.dumps({"requests": api.requests, "cpu_s": cpu, "wall_s": wall, "reported": len(done),
                      "stats": watcher.stats}), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--span", type=float, default=180.0, help="seconds over which the kubelet completes runs")
    parser.add_argument("--poll", type=float, default=30.0, help="per-evaluation poll interval to compare with")
    parser.add_argument("--fail-fraction", type=float, default=0.1, help="runs that crash (each costs a log read)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--watch-child", nargs=4, metavar=("KUBECONFIG", "NS", "ROOT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure_logs("WARNING")
    if args.watch_child:
        kc, ns, root, n = args.watch_child
        return watch_child(kc, ns, root, int(n))

    from tests.k8s.kubelet import Behaviour, FakeKubelet
    from tests.k8s.specs import hf_spec

    started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, check=False)
    if started.returncode != 0:
        print(started.stderr, file=sys.stderr)
        return 1
    kubeconfig = subprocess.run([str(SCRIPT), "env"], capture_output=True, text=True, check=True).stdout
    kubeconfig = kubeconfig.strip().split("=", 1)[1]
    state_dir = Path(kubeconfig).parent
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    results_root = f"/tmp/budeval-bench-{namespace}"
    admin = JsonApi(client(kubeconfig))
    admin.request("POST", "/api/v1/namespaces", what="ns", body={"metadata": {"name": namespace}})
    admin.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", what="sa",
                  body={"metadata": {"name": RUNNER_SA}, "automountServiceAccountToken": False})

    rng = random.Random(args.seed)
    finish_after = {f"e{i:04d}": rng.uniform(5.0, args.span) for i in range(args.jobs)}
    failing = set(rng.sample(sorted(finish_after), int(args.jobs * args.fail_fraction)))
    submitted_at: dict[str, float] = {}

    def decide(pod: dict[str, Any]) -> Behaviour:
        eval_id = pod["metadata"]["labels"][m.LABEL_EVAL]
        left = finish_after[eval_id] - (time.monotonic() - submitted_at.get(eval_id, time.monotonic()))
        if eval_id in failing:
            return Behaviour("fail", exit_code=1, log="Traceback (most recent call last):\nRuntimeError: boom\n",
                             run_for_s=max(0.0, left))
        return Behaviour("succeed", run_for_s=max(0.0, left))

    kubelet = FakeKubelet(client(kubeconfig), namespace, state_dir / "pki", decide=decide, gpus=args.jobs,
                          workers=8).start()
    child = subprocess.Popen(
        [sys.executable, __file__, "--watch-child", kubeconfig, namespace, results_root, str(args.jobs)],
        stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        print("watcher child failed to start", file=sys.stderr)
        return 1

    settings = settings_for(namespace, results_root)
    submitter = KubernetesBackend(settings, client(kubeconfig), backoff_limit=0)
    poll_api = client(kubeconfig, counting=True)
    poller = KubernetesBackend(settings, poll_api)
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        def submit(eval_id: str) -> None:
            submitted_at[eval_id] = time.monotonic()
            submitter.submit(hf_spec(eval_id, "r0", gpus=1))

        list(pool.map(submit, finish_after))
    print(f"submitted {args.jobs} jobs in {time.monotonic() - t0:.1f} s", file=sys.stderr)

    # Per-evaluation polling over the same span: each eval polls every POLL s after its submission until terminal.
    pending = {e: submitted_at[e] + args.poll for e in finish_after}
    polls = 0
    with ThreadPoolExecutor(8) as pool:
        while pending:
            now = time.monotonic()
            due = [e for e, at in pending.items() if at <= now]
            for eval_id, state in zip(due, pool.map(lambda e: poller.get(e, "r0"), due), strict=True):
                polls += 1
                if state.finished:
                    del pending[eval_id]
                else:
                    pending[eval_id] = now + args.poll
            if pending:
                time.sleep(max(0.05, min(pending.values()) - time.monotonic()))
    span = time.monotonic() - t0
    out, _ = child.communicate(timeout=600)
    watched = json.loads(out.strip().splitlines()[-1])
    kubelet.stop()
    admin.request("DELETE", f"/api/v1/namespaces/{namespace}", what="delete ns")

    n = args.jobs
    print(f"span {span:.0f} s, watcher wall {watched['wall_s']:.0f} s, reported {watched['reported']}/{n}, "
          f"watcher stats {watched['stats']}, kubelet {kubelet.stats}, polls {polls}", file=sys.stderr)
    print(f"requests_per_eval={watched['requests'] / n:.4f} cpu_s={watched['cpu_s']:.2f} "
          f"polling_requests_per_eval={poll_api.requests / n:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
