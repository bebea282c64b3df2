"""The watcher's relist logic with a scripted API (the k8s tests prove reconnects against a real apiserver)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, cast

from budeval.backends.base import RunState
from budeval.backends.kubernetes import manifests as m
from budeval.backends.kubernetes.api import JsonApi
from budeval.backends.kubernetes.watcher import JobWatcher
from budeval.errors import BackendUnavailableError


def job(uid: str, rv: str, done: bool) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "e-r0",
            "uid": uid,
            "resourceVersion": rv,
            "creationTimestamp": "2026-11-23T12:00:00Z",
            "labels": {m.LABEL_EVAL: "e", m.LABEL_RUN: "r0"},
        },
        "status": {"conditions": [{"type": "Complete", "status": "True"}] if done else []},
    }


class ScriptedApi:
    """Jobs: first list empty, watch answers 410 Gone; the relist then holds the finished Job. Pods: always empty."""

    def __init__(self) -> None:
        self.job_lists = 0
        self.watch_queries: list[dict[str, Any]] = []
        self.fail_next_list = True

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "",
    ) -> dict[str, Any]:
        if path.endswith("/pods"):
            return {"metadata": {"resourceVersion": "1"}, "items": []}
        self.job_lists += 1
        if self.job_lists == 2 and self.fail_next_list:
            self.fail_next_list = False
            raise BackendUnavailableError("connection refused")
        items = [] if self.job_lists == 1 else [job("u1", "20", done=True)]
        return {"metadata": {"resourceVersion": str(10 * self.job_lists)}, "items": items}

    def watch(self, path: str, *, what: str, query: dict[str, Any], timeout_s: float) -> Iterator[dict[str, Any]]:
        if path.endswith("/pods"):
            threading.Event().wait(0.05)
            return iter(())
        self.watch_queries.append(query)
        if len(self.watch_queries) == 1:
            return iter([{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}])
        threading.Event().wait(0.05)
        return iter([{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "99"}}}])


def test_gone_relists_and_reports_a_run_finished_meanwhile_once() -> None:
    api = ScriptedApi()
    reports: list[RunState] = []
    got = threading.Event()

    def on_finished(state: RunState) -> None:
        reports.append(state)
        got.set()

    watcher = JobWatcher(
        cast(JsonApi, api),
        namespace="ns",
        unschedulable_after_s=60,
        on_finished=on_finished,
        read_log=lambda name: "",
        sweep_interval_s=0.05,
    )
    watcher.start()
    try:
        assert got.wait(30), "the relisted Job was never reported"
        threading.Event().wait(0.3)  # more watch rounds and sweeps must not report it again
    finally:
        watcher.stop()
    assert [(s.eval_id, s.run_id, s.phase) for s in reports] == [("e", "r0", "succeeded")]
    assert watcher.stats["gone"] == 1 and watcher.stats["errors"] >= 1 and api.job_lists >= 3
    assert api.watch_queries[0]["resourceVersion"] == "10"
    assert api.watch_queries[1]["resourceVersion"] == "30"  # watched from the relist's version
    assert all(q["labelSelector"] == m.RUN_SELECTOR for q in api.watch_queries)


class TwoJobsApi:
    """One watch stream in which two runs' Jobs complete back to back (then the stream stays quiet)."""

    def request(self, method: str, path: str, *, what: str, query: dict[str, Any] | None = None, body: Any = None,
                content_type: str = "") -> dict[str, Any]:
        return {"metadata": {"resourceVersion": "1"}, "items": []}

    def watch(self, path: str, *, what: str, query: dict[str, Any], timeout_s: float) -> Iterator[dict[str, Any]]:
        if path.endswith("/pods") or query["resourceVersion"] != "1":
            threading.Event().wait(0.2)
            return iter(())
        done = []
        for n, run in enumerate(("r0", "r1")):
            obj = job(f"u{n}", str(10 + n), done=True)
            obj["metadata"].update(name=f"e-{run}", labels={m.LABEL_EVAL: "e", m.LABEL_RUN: run})
            done.append({"type": "MODIFIED", "object": obj})
        return iter(done)


def test_a_slow_callback_does_not_hold_the_next_report() -> None:
    """The first report's ``on_finished`` hangs (a busy sidecar); the second run's report still comes. Before, both
    ran on the Jobs stream's thread and the second waited for the first (tests/k8s/test_watch_delivery.py proves the
    same against the real apiserver)."""
    release, second = threading.Event(), threading.Event()
    seen: list[str] = []

    def on_finished(state: RunState) -> None:
        seen.append(state.run_id)
        if state.run_id == "r0":
            release.wait(60)
        else:
            second.set()

    watcher = JobWatcher(cast(JsonApi, TwoJobsApi()), namespace="ns", unschedulable_after_s=60,
                         on_finished=on_finished, read_log=lambda name: "")
    watcher.start()
    try:
        assert second.wait(30), f"r1 was not reported while r0's callback hung (seen: {seen})"
    finally:
        release.set()
        watcher.stop()
    assert sorted(seen) == ["r0", "r1"]


def _pod(uid: str, terminated: dict[str, Any] | None) -> dict[str, Any]:
    state = {"terminated": terminated} if terminated else {"running": {"startedAt": "2026-11-23T12:00:01Z"}}
    return {
        "metadata": {"name": "e-r0-abcde", "creationTimestamp": "2026-11-23T12:00:00Z",
                     "labels": {"controller-uid": uid, m.LABEL_EVAL: "e", m.LABEL_RUN: "r0"}},
        "status": {"phase": "Failed" if terminated else "Running",
                   "containerStatuses": [{"name": m.CONTAINER, "state": state}]},
    }


class LaggingPodsApi:
    """The Job's Failed condition arrives on the Jobs stream while the pod stream still shows the pod running (the
    Job controller saw the pod's exit first); only a fresh list of the pods has the terminated container."""

    def __init__(self) -> None:
        self.pod_lists: list[dict[str, Any]] = []

    def request(self, method: str, path: str, *, what: str, query: dict[str, Any] | None = None, body: Any = None,
                content_type: str = "") -> dict[str, Any]:
        if path.endswith("/pods") and query and query.get("labelSelector", "").startswith("controller-uid="):
            self.pod_lists.append(query)
            return {"items": [_pod("u1", {"exitCode": 1, "reason": "Error"})]}
        if path.endswith("/pods"):
            return {"metadata": {"resourceVersion": "1"}, "items": [_pod("u1", None)]}
        failed = job("u1", "5", done=False)
        failed["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                           "message": "Job has reached the specified backoff limit"}]}
        return {"metadata": {"resourceVersion": "1"}, "items": [failed]}

    def watch(self, path: str, *, what: str, query: dict[str, Any], timeout_s: float) -> Iterator[dict[str, Any]]:
        threading.Event().wait(0.2)
        return iter(())


def test_a_failed_job_whose_cached_pod_lags_is_classified_from_a_fresh_read() -> None:
    """Seen in CI (tests/k8s/test_backend.py::test_each_failure_class_with_reason_and_log, 2 runs in 4 on a busy
    machine): the run was reported ``backoff_limit``, "last pod ...: no exit status", instead of ``task_errors``."""
    api, reports, got = LaggingPodsApi(), [], threading.Event()

    def on_finished(state: RunState) -> None:
        reports.append(state)
        got.set()

    watcher = JobWatcher(cast(JsonApi, api), namespace="ns", unschedulable_after_s=60, on_finished=on_finished,
                         read_log=lambda name: "Traceback\nOpenICLInfer[m/tiny_qa] failed\n")
    watcher.start()
    try:
        assert got.wait(30), "the failed Job was never reported"
    finally:
        watcher.stop()
    assert api.pod_lists, f"the pods were not read afresh: {reports}"
    assert (reports[0].phase, reports[0].reason_class) == ("failed", "crash"), reports[0]
    assert "exited with code 1" in reports[0].message
