"""A fake scheduler + kubelet for a real kube-apiserver without nodes: tests and benchmarks play the cluster with it.

It registers one GPU Node (``nvidia.com/gpu`` capacity, InternalIP 127.0.0.1, its kubelet port), watches the pods of
one namespace, schedules them like kube-scheduler would (GPU capacity and nodeSelector; otherwise a ``PodScheduled=
False/Unschedulable`` condition with the scheduler's message), binds them through ``pods/binding``, writes pod status
(Running, then Succeeded/Failed with container states such as OOMKilled, or ErrImagePull/ImagePullBackOff), serves
container logs over HTTPS at ``/containerLogs/{ns}/{pod}/{container}`` for ``pods/log`` (certificate signed by the CA
the apiserver trusts via ``--kubelet-certificate-authority``), finalises graceful pod deletions like a kubelet, and
for a successful run copies a fixture OpenCompass work dir into the pod's ``--work-dir`` (the shared volume).
The real Job controller then marks Jobs Complete or Failed.

What each pod does is decided by a callback ``decide(pod) -> Behaviour``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import shutil
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

from kubernetes import client as k8s

from budeval.backends.kubernetes.api import JsonApi, core_path
from budeval.errors import BudevalError, NotFoundError

Json = dict[str, Any]
Outcome = Literal["succeed", "fail", "oom", "image_pull", "evict", "hang", "unschedulable"]


@dataclass(frozen=True)
class Behaviour:
    outcome: Outcome = "succeed"
    exit_code: int = 0
    #: The container's log; for ``succeed`` with a fixture, the fixture's ``.budeval/output.log`` by default.
    log: str | None = None
    #: An OpenCompass work dir (timestamp folders) copied into the pod's ``--work-dir`` before it succeeds.
    fixture: Path | None = None
    #: Seconds in Running before the container ends.
    run_for_s: float = 0.0


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _work_dir(pod: Json) -> Path | None:
    for container in pod["spec"]["containers"]:
        args = list(container.get("command") or []) + list(container.get("args") or [])
        if "--work-dir" in args:
            return Path(args[args.index("--work-dir") + 1])
    return None


def _gpus(pod: Json, resource: str) -> int:
    total = 0
    for container in pod["spec"]["containers"]:
        limits = (container.get("resources") or {}).get("limits") or {}
        total += int(limits.get(resource, 0))
    return total


@dataclass
class FakeKubelet:
    api_client: k8s.ApiClient
    namespace: str
    pki_dir: Path
    decide: Callable[[Json], Behaviour] = field(default=lambda pod: Behaviour())
    node_name: str = ""
    gpus: int = 8
    gpu_resource: str = "nvidia.com/gpu"
    node_labels: dict[str, str] = field(default_factory=dict)
    workers: int = 4

    def __post_init__(self) -> None:
        self.api = JsonApi(self.api_client)
        self.node_name = self.node_name or f"fake-gpu-{self.namespace}"
        self.logs: dict[tuple[str, str, str], str] = {}
        self.stats: dict[str, int] = {"bound": 0, "succeeded": 0, "failed": 0, "unschedulable": 0, "deleted": 0}
        self._lock = threading.Lock()
        self._handled: set[str] = set()  # pod uids scheduled (or marked unschedulable)
        self._allocated: dict[str, int] = {}  # pod uid -> GPUs held while not terminal
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="fake-kubelet")
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None
        self._hanging: dict[str, Json] = {}  # pod name -> pod, for outcome "hang" until release()

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> FakeKubelet:
        self._serve_logs()
        self._register_node()
        for name, target in (("watch", self._watch_loop), ("timers", self._timer_loop)):
            thread = threading.Thread(target=target, name=f"fake-kubelet-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with contextlib.suppress(BudevalError):
            self.api.request("DELETE", f"/api/v1/nodes/{self.node_name}", what="delete node")

    # -- node and logs ---------------------------------------------------------------------------------------------
    def _serve_logs(self) -> None:
        kubelet = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self.send_error(404)
                    return
                text = kubelet.logs.get((parts[1], parts[2], parts[3]))
                if text is None:
                    self.send_error(404, "container not found")
                    return
                query = parse_qs(url.query)
                if "tailLines" in query:
                    lines = text.splitlines(keepends=True)
                    text = "".join(lines[-int(query["tailLines"][0]) :])
                data = text.encode()
                if "limitBytes" in query:
                    data = data[: int(query["limitBytes"][0])]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.pki_dir / "kubelet.crt", self.pki_dir / "kubelet.key")
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, name="fake-kubelet-logs", daemon=True).start()

    def _register_node(self) -> None:
        labels = {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux", **self.node_labels}
        capacity = {"cpu": "64", "memory": "512Gi", "pods": "2000", self.gpu_resource: str(self.gpus)}
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "fake kubelet is posting ready status",
                    "lastHeartbeatTime": now_iso(),
                    "lastTransitionTime": now_iso(),
                }
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "localhost"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
        }
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node_name, "labels": labels}}
        try:
            self.api.request("POST", "/api/v1/nodes", what="create node", body=node)
        except BudevalError:
            self.api.request(
                "PATCH",
                f"/api/v1/nodes/{self.node_name}",
                what="label node",
                body={"metadata": {"labels": labels}},
                content_type="application/merge-patch+json",
            )
        self.api.request(
            "PATCH",
            f"/api/v1/nodes/{self.node_name}/status",
            what="node status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    # -- pod events ------------------------------------------------------------------------------------------------
    def _watch_loop(self) -> None:
        path = core_path(self.namespace, "pods")
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    listing = self.api.request("GET", path, what="list pods")
                    rv = str(listing["metadata"]["resourceVersion"])
                    for pod in listing.get("items") or []:
                        self._on_pod(pod)
                for event in self.api.watch(path, what="watch pods", query={"resourceVersion": rv}, timeout_s=60):
                    if self._stop.is_set():
                        return
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        rv = None
                        break
                    rv = str(obj.get("metadata", {}).get("resourceVersion") or rv)
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._on_pod(obj)
                    elif event.get("type") == "DELETED":
                        self._release(obj)
            except BudevalError:
                rv = None
                self._stop.wait(0.5)  # the apiserver may be restarting: relist when it is back

    def _on_pod(self, pod: Json) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        if meta.get("deletionTimestamp"):
            if spec.get("nodeName") == self.node_name:
                self._submit(lambda: self._finalise_delete(pod))
            self._release(pod)
            return
        if spec.get("nodeName") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        with self._lock:
            if uid in self._handled:
                return
            self._handled.add(uid)
        self._submit(lambda: self._schedule(pod))

    def _release(self, pod: Json) -> None:
        with self._lock:
            self._allocated.pop(pod["metadata"]["uid"], None)

    def _schedule(self, pod: Json) -> None:
        behaviour = self.decide(pod)
        name = pod["metadata"]["name"]
        need = _gpus(pod, self.gpu_resource)
        selector = pod["spec"].get("nodeSelector") or {}
        node_labels = {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux", **self.node_labels}
        with self._lock:
            free = self.gpus - sum(self._allocated.values())
            fits = need <= free and all(node_labels.get(k) == v for k, v in selector.items())
            if fits and behaviour.outcome != "unschedulable":
                self._allocated[pod["metadata"]["uid"]] = need
        if not fits or behaviour.outcome == "unschedulable":
            why = f"0/1 nodes are available: 1 Insufficient {self.gpu_resource}."
            if not all(node_labels.get(k) == v for k, v in selector.items()):
                why = "0/1 nodes are available: 1 node(s) didn't match node selector."
            self._status(
                pod, {"phase": "Pending", "conditions": [self._cond("PodScheduled", "False", "Unschedulable", why)]}
            )
            self.stats["unschedulable"] += 1
            return
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": self.namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        self.api.request("POST", core_path(self.namespace, "pods", name) + "/binding", what="bind", body=binding)
        self.stats["bound"] += 1
        scheduled = self._cond("PodScheduled", "True")
        container = pod["spec"]["containers"][0]
        key = (self.namespace, name, container["name"])
        if behaviour.outcome == "image_pull":
            image = container["image"]
            self._status(
                pod, self._waiting(pod, scheduled, "ErrImagePull", f'rpc error: pulling image "{image}": not found')
            )
            self._after(
                0.2,
                lambda: self._status(
                    pod, self._waiting(pod, scheduled, "ImagePullBackOff", f'Back-off pulling image "{image}"')
                ),
            )
            return
        self.logs[key] = "starting OpenCompass\n"
        self._status(
            pod,
            {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "startTime": now_iso(),
                "conditions": [scheduled, self._cond("Ready", "True")],
                "containerStatuses": [self._cstatus(container, {"running": {"startedAt": now_iso()}}, ready=True)],
            },
        )
        if behaviour.outcome == "hang":
            with self._lock:
                self._hanging[name] = pod
        else:
            self._after(behaviour.run_for_s, lambda: self._finish(pod, behaviour))

    def release(self, behaviour: Behaviour, match: Callable[[Json], bool] = lambda pod: True) -> int:
        """Ends hanging pods (outcome ``hang``) that ``match`` with ``behaviour``; returns how many."""
        with self._lock:
            chosen = [p for p in self._hanging.values() if match(p)]
            for pod in chosen:
                del self._hanging[pod["metadata"]["name"]]
        for pod in chosen:
            self._submit(lambda pod=pod: self._finish(pod, behaviour))  # type: ignore[misc]
        return len(chosen)

    def hanging(self) -> list[str]:
        with self._lock:
            return sorted(self._hanging)

    def _finish(self, pod: Json, behaviour: Behaviour) -> None:
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        key = (self.namespace, name, container["name"])
        log = behaviour.log
        if behaviour.outcome == "succeed" and behaviour.fixture is not None:
            target = _work_dir(pod)
            if target is not None:
                shutil.copytree(behaviour.fixture, target, dirs_exist_ok=True)
            output = behaviour.fixture / ".budeval" / "output.log"
            if log is None and output.is_file():
                log = output.read_text(errors="replace")
        self.logs[key] = log if log is not None else "done\n"
        started = (pod.get("status") or {}).get("startTime") or now_iso()
        scheduled = self._cond("PodScheduled", "True")
        if behaviour.outcome == "succeed":
            code, reason, phase = 0, "Completed", "Succeeded"
        elif behaviour.outcome == "oom":
            code, reason, phase = 137, "OOMKilled", "Failed"
        elif behaviour.outcome == "evict":
            self._status(
                pod,
                {
                    "phase": "Failed",
                    "reason": "Evicted",
                    "message": "The node was low on resource: memory.",
                    "conditions": [scheduled],
                    "containerStatuses": [],
                },
            )
            self.stats["failed"] += 1
            self._release(pod)
            return
        else:
            code, reason, phase = behaviour.exit_code or 1, "Error", "Failed"
        terminated = {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now_iso()}
        self._status(
            pod,
            {
                "phase": phase,
                "conditions": [scheduled, self._cond("Ready", "False", "PodCompleted")],
                "containerStatuses": [self._cstatus(container, {"terminated": terminated}, ready=False)],
            },
        )
        self.stats["succeeded" if phase == "Succeeded" else "failed"] += 1
        self._release(pod)

    def _finalise_delete(self, pod: Json) -> None:
        name = pod["metadata"]["name"]
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": pod["metadata"]["uid"]},
        }
        try:
            self.api.request("DELETE", core_path(self.namespace, "pods", name), what="delete pod", body=body)
            self.stats["deleted"] += 1
        except BudevalError:
            pass

    # -- status helpers --------------------------------------------------------------------------------------------
    @staticmethod
    def _cond(kind: str, status: str, reason: str | None = None, message: str | None = None) -> Json:
        cond: Json = {"type": kind, "status": status, "lastTransitionTime": now_iso(), "lastProbeTime": None}
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        return cond

    @staticmethod
    def _cstatus(container: Json, state: Json, *, ready: bool) -> Json:
        return {
            "name": container["name"],
            "image": container["image"],
            "imageID": "",
            "ready": ready,
            "restartCount": 0,
            "started": "running" in state,
            "state": state,
        }

    def _waiting(self, pod: Json, scheduled: Json, reason: str, message: str) -> Json:
        container = pod["spec"]["containers"][0]
        return {
            "phase": "Pending",
            "hostIP": "127.0.0.1",
            "startTime": now_iso(),
            "conditions": [scheduled],
            "containerStatuses": [
                self._cstatus(container, {"waiting": {"reason": reason, "message": message}}, ready=False)
            ],
        }

    def _status(self, pod: Json, status: Json) -> None:
        name = pod["metadata"]["name"]
        with contextlib.suppress(NotFoundError):  # deleted meanwhile (cancel, deadline)
            self.api.request(
                "PATCH",
                core_path(self.namespace, "pods", name) + "/status",
                what="pod status",
                body={"status": status},
                content_type="application/merge-patch+json",
            )

    # -- timers ----------------------------------------------------------------------------------------------------
    def _submit(self, fn: Callable[[], None]) -> None:
        if not self._stop.is_set():
            self._pool.submit(self._guard, fn)

    def _guard(self, fn: Callable[[], None]) -> None:
        # A pod deleted meanwhile, or the apiserver restarting: tests assert on outcomes, not on this.
        with contextlib.suppress(BudevalError):
            fn()

    def _after(self, delay_s: float, fn: Callable[[], None]) -> None:
        with self._wake:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._seq), fn))
            self._wake.notify()

    def _timer_loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                while not self._stop.is_set() and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic())
                    self._wake.wait(timeout if timeout is not None else 1.0)
                if self._stop.is_set():
                    return
                _, _, fn = heapq.heappop(self._heap)
            self._submit(fn)
