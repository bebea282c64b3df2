"""One shared watch on budeval's Jobs and their pods (label selector) that reports runs reaching a terminal state.

Informer-style: list, then watch from the list's ``resourceVersion``; a stream that ends is resumed from the last
version seen (bookmarks keep it fresh); ``410 Gone`` or any error relists after a backoff. Pods are watched too,
because image pull failures and unschedulable pods never change the Job. A sweeper re-checks the cached pending
pods (and Jobs without pods: Kueue's unadmitted workloads) against ``unschedulable_after_s`` and
``kueue_admission_timeout_s`` without any API request. A run costs API requests only when it fails (one
``pods/log`` read for the excerpt); the workflow's durable-timer poll stays as the fallback for anything missed.

The stream threads never wait on I/O other than their own stream: they classify without logs, and a finished run is
handed to a small delivery pool, which reads the failure's log and calls ``on_finished``. Before, the callback (the
service raises the workflow event through its sidecar) and the log read ran on the Jobs stream's thread, so one slow
delivery held every later event of the stream: the second of two runs finishing together was reported only when the
first delivery returned (seen as a run reported ~54 s late on the real node). Each report logs ``lag_s``, the
seconds from the Job's terminal condition to the report.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from budeval.backends.base import RunFinishedCallback, RunState
from budeval.backends.kubernetes import api as kapi
from budeval.backends.kubernetes.classify import condition, ended_with_reason, parse_time, run_state
from budeval.backends.kubernetes.manifests import LABEL_EVAL, LABEL_RUN, RUN_SELECTOR
from budeval.config import default
from budeval.errors import BudevalError
from budeval.logs import get_logger

Json = dict[str, Any]
RunKey = tuple[str, str]
#: Seconds to wait before relisting after consecutive errors (the last one repeats).
ERROR_BACKOFFS: tuple[float, ...] = tuple(default("kube_watch_backoffs_s"))
#: Deliveries (log read + ``on_finished``) running at once; more runs finishing together queue behind them.
DELIVERY_THREADS = 4
#: A delivery slower than this many seconds is logged as a warning (the callback or the log read is slow).
SLOW_DELIVERY_S = 5.0
#: A failed Job whose cached pods do not say why they ended: the pod watch can lag the Job's (the Job controller
#: marks the Job Failed from the pod status the watcher has not seen yet). Seconds between fresh reads of the pods,
#: at most this many, before classifying with what there is (an evicted pod never says more).
FRESH_POD_WAITS_S = (0.0, 0.5, 1.0)


def _no_log(_pod: str) -> str:
    return ""


def _finished_at(job: Json) -> datetime | None:
    """When the Job reached its terminal condition (``Complete``/``Failed``), from the Job itself."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return parse_time(cond.get("lastTransitionTime")) or parse_time(
                (job.get("status") or {}).get("completionTime"))
    return None


def _key(obj: Json) -> RunKey | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    eval_id, run_id = labels.get(LABEL_EVAL), labels.get(LABEL_RUN)
    if not isinstance(eval_id, str) or not isinstance(run_id, str):
        return None
    return eval_id, run_id


def _uid(obj: Json) -> str:
    return str((obj.get("metadata") or {}).get("uid", ""))


class JobWatcher:
    """Started by :meth:`KubernetesBackend.watch`; ``stop()`` ends its threads."""

    def __init__(
        self,
        api: kapi.JsonApi,
        *,
        namespace: str,
        unschedulable_after_s: float,
        on_finished: RunFinishedCallback,
        kueue_admission_timeout_s: float = 0.0,
        read_log: Callable[[str], str],
        watch_timeout_s: float = float(default("kube_watch_timeout_s")),
        sweep_interval_s: float | None = None,
        backoffs_s: Sequence[float] = ERROR_BACKOFFS,
    ) -> None:
        """``watch_timeout_s``: the server ends each watch after about this long (then it is reopened);
        ``backoffs_s``: seconds before a relist after 1, 2, ... consecutive failures (the last repeats); settings
        ``kube_watch_timeout_s`` / ``kube_watch_backoffs_s``."""
        self.backoffs_s = tuple(backoffs_s) or ERROR_BACKOFFS
        self.api = api
        self.namespace = namespace
        self.unschedulable_after_s = unschedulable_after_s
        self.kueue_admission_timeout_s = kueue_admission_timeout_s
        self.on_finished = on_finished
        self.read_log = read_log
        self.watch_timeout_s = watch_timeout_s
        limits = [t for t in (unschedulable_after_s, kueue_admission_timeout_s) if t > 0] or [unschedulable_after_s]
        self.sweep_interval_s = sweep_interval_s or max(0.2, min(10.0, min(limits) / 4))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._jobs: dict[RunKey, Json] = {}
        self._pods: dict[RunKey, dict[str, Json]] = {}
        self._reported: set[str] = set()  # Job uids whose terminal state was reported
        self._threads: list[threading.Thread] = []
        self._deliveries = ThreadPoolExecutor(max_workers=DELIVERY_THREADS, thread_name_prefix="budeval-k8s-report")
        self._log = get_logger(component="k8s-watch", namespace=namespace)
        #: Counters for tests and benchmarks: lists, watch streams, errors, reports.
        self.stats: dict[str, int] = {"lists": 0, "watches": 0, "errors": 0, "gone": 0, "reported": 0}
        self.synced = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> JobWatcher:
        jobs_synced, pods_synced = threading.Event(), threading.Event()
        specs: list[tuple[str, Callable[[], None]]] = [
            ("jobs", lambda: self._run_stream(kapi.jobs_path(self.namespace), "jobs", jobs_synced)),
            ("pods", lambda: self._run_stream(kapi.core_path(self.namespace, "pods"), "pods", pods_synced)),
            ("sweep", self._sweep_loop),
        ]
        for name, target in specs:
            thread = threading.Thread(target=target, name=f"budeval-k8s-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

        def mark_synced() -> None:
            jobs_synced.wait()
            pods_synced.wait()
            self.synced.set()

        threading.Thread(target=mark_synced, name="budeval-k8s-synced", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._deliveries.shutdown(wait=False, cancel_futures=True)
        for thread in self._threads:
            if thread is not threading.current_thread():
                # A watch blocked in a read ends at its timeout; daemon threads never hold the process.
                thread.join(timeout=1.0)

    # -- streams ---------------------------------------------------------------------------------------------------
    def _run_stream(self, path: str, kind: str, synced: threading.Event) -> None:
        failures = 0
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    listing = self.api.request(
                        "GET", path, what=f"list {kind}", query={"labelSelector": RUN_SELECTOR}
                    )
                    self.stats["lists"] += 1
                    resource_version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
                    self._replace(kind, listing.get("items") or [])
                    synced.set()
                self.stats["watches"] += 1
                timeout = self.watch_timeout_s * random.uniform(0.9, 1.0)  # spread reconnects of many watchers
                for event in self.api.watch(
                    path,
                    what=f"watch {kind}",
                    query={"labelSelector": RUN_SELECTOR, "resourceVersion": resource_version},
                    timeout_s=timeout,
                ):
                    if self._stop.is_set():
                        return
                    etype, obj = event.get("type"), event.get("object") or {}
                    if etype == "ERROR":
                        code = obj.get("code")
                        self.stats["gone" if code == 410 else "errors"] += 1
                        self._log.info("watch error event, relisting", kind=kind, code=code)
                        resource_version = None
                        break
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        resource_version = str(rv)
                    if etype == "BOOKMARK":
                        continue
                    self._apply(kind, str(etype), obj)
                failures = 0
            except BudevalError as exc:
                self.stats["errors"] += 1
                delay = self.backoffs_s[min(failures, len(self.backoffs_s) - 1)]
                failures += 1
                self._log.warning(
                    "watch failed, will relist", kind=kind, error=exc.message, attempt=failures, retry_in_s=delay
                )
                resource_version = None
                self._stop.wait(delay)
            except Exception as exc:  # never let the watcher thread die: the next loop relists
                self.stats["errors"] += 1
                failures += 1
                self._log.error("watch crashed, will relist", kind=kind, error=type(exc).__name__)
                resource_version = None
                self._stop.wait(self.backoffs_s[-1])

    def _replace(self, kind: str, items: list[Json]) -> None:
        with self._lock:
            if kind == "jobs":
                self._jobs = {k: item for item in items if (k := _key(item)) is not None}
            else:
                self._pods = {}
                for item in items:
                    k = _key(item)
                    if k is not None:
                        self._pods.setdefault(k, {})[item["metadata"]["name"]] = item
            keys = list(self._jobs)
        self._evaluate(keys)

    def _apply(self, kind: str, etype: str, obj: Json) -> None:
        k = _key(obj)
        if k is None:
            return
        with self._lock:
            if kind == "jobs":
                if etype == "DELETED":
                    gone = self._jobs.pop(k, None)
                    if gone is not None and _uid(gone) == _uid(obj):
                        # Deleted before it finished (someone deleted it by hand): report it as cancelled.
                        obj = dict(obj, metadata=dict(obj.get("metadata") or {}, deletionTimestamp="deleted"))
                        self._jobs[k] = obj
                else:
                    self._jobs[k] = obj
            else:
                pods = self._pods.setdefault(k, {})
                name = obj["metadata"]["name"]
                if etype == "DELETED":
                    pods.pop(name, None)
                else:
                    pods[name] = obj
        self._evaluate([k])
        if kind == "jobs" and etype == "DELETED":
            with self._lock:
                if self._jobs.get(k) is obj:
                    del self._jobs[k]
                self._reported.discard(_uid(obj))  # a deleted Job never reappears under the same uid

    # -- evaluation ------------------------------------------------------------------------------------------------
    def _evaluate(self, keys: list[RunKey]) -> None:
        now = datetime.now(UTC)
        todo: list[tuple[str, Json, list[Json]]] = []
        with self._lock:
            for k in keys:
                job = self._jobs.get(k)
                if job is None or _uid(job) in self._reported:
                    continue
                pods = [p for p in self._pods.get(k, {}).values() if kapi.owned_by_job(p, job)]
                todo.append((_uid(job), job, pods))
        for uid, job, pods in todo:
            try:  # no I/O on this thread: a failure's log is read by the delivery
                state = run_state(
                    job, pods, now=now, unschedulable_after_s=self.unschedulable_after_s, read_log=_no_log,
                    kueue_admission_timeout_s=self.kueue_admission_timeout_s,
                )
            except Exception as exc:  # a malformed object must not stop the watch
                self._log.warning("cannot classify job", job=job.get("metadata", {}).get("name"), error=str(exc))
                continue
            if not state.finished:
                continue
            with self._lock:
                if uid in self._reported:
                    continue
                self._reported.add(uid)
            try:
                self._deliveries.submit(self._deliver, job, pods, now, state)
            except RuntimeError:  # stopped meanwhile
                return

    def _deliver(self, job: Json, pods: list[Json], now: datetime, state: RunState) -> None:
        """On a delivery thread: the failure's excerpt from the pod's log (the same classification, now with the
        log: it can turn ``crash`` into ``task_errors``), then ``on_finished``."""
        began = time.monotonic()
        if state.phase == "failed":
            pods = self._pods_saying_why(job, pods)
            try:
                state = run_state(job, pods, now=now, unschedulable_after_s=self.unschedulable_after_s,
                                  read_log=self.read_log, kueue_admission_timeout_s=self.kueue_admission_timeout_s)
            except Exception as exc:  # keep the classification made without the log
                self._log.warning("cannot classify job with its log", error=type(exc).__name__)
        self._report(state, _finished_at(job))
        took = time.monotonic() - began
        if took > SLOW_DELIVERY_S:
            self._log.warning("slow run report", eval_id=state.eval_id, run_id=state.run_id, seconds=round(took, 1))

    def _pods_saying_why(self, job: Json, pods: list[Json]) -> list[Json]:
        """``pods``, or when none of them says why it ended (or none is cached yet), the Job's pods read afresh from
        the API (a few times, :data:`FRESH_POD_WAITS_S`) until one does; the cached ones when the API cannot be
        read. Not for a Job past its deadline: its classification needs no pod."""
        failed = condition(job, "Failed") or {}
        if any(ended_with_reason(p) for p in pods) or failed.get("reason") == "DeadlineExceeded":
            return pods
        for wait_s in FRESH_POD_WAITS_S:
            if self._stop.wait(wait_s):
                break
            try:
                fresh = kapi.job_pods(self.api, self.namespace, job)
            except BudevalError:
                break
            if any(ended_with_reason(p) for p in fresh):
                return fresh
        return pods

    def _report(self, state: RunState, finished_at: datetime | None = None) -> None:
        with self._lock:  # deliveries run on several threads
            self.stats["reported"] += 1
        log = get_logger(eval_id=state.eval_id, run_id=state.run_id, component="k8s-watch")
        lag = None if finished_at is None else round((datetime.now(UTC) - finished_at).total_seconds(), 1)
        log.info("run finished", phase=state.phase, reason=state.reason_class, lag_s=lag)
        try:
            self.on_finished(state)
        except Exception as exc:  # the durable-timer poll catches what the callback could not deliver
            log.warning("on_finished callback failed", error=type(exc).__name__)

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.sweep_interval_s):
            with self._lock:
                keys = list(self._jobs)
            self._evaluate(keys)
