"""Failure classification from Job and pod objects (pure logic; the k8s tests prove it against the real API)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from budeval.backends.kubernetes import manifests as m
from budeval.backends.kubernetes.classify import run_state
from budeval.engine.results.layout import task_failure_lines
from budeval.masking import redact

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def job(conditions: list[dict[str, Any]] | None = None, age: float = 5) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "e-r0",
            "uid": "u1",
            "creationTimestamp": ts(age),
            "labels": {m.LABEL_EVAL: "e", m.LABEL_RUN: "r0"},
        },
        "spec": {},
        "status": {"conditions": conditions or []},
    }


def pod(phase: str, *, age: float = 5, node: str | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "e-r0-abcde", "creationTimestamp": ts(age), "labels": {"controller-uid": "u1"}},
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": phase, **status},
    }


def no_log(name: str) -> str:
    raise AssertionError("no log read expected")


def state(j: dict[str, Any], pods: list[dict[str, Any]], limit: float = 60, log: str = "") -> Any:
    return run_state(j, pods, now=NOW, unschedulable_after_s=limit, read_log=lambda name: log)


def test_complete_needs_no_log_request() -> None:
    s = run_state(job([{"type": "Complete", "status": "True"}]), [], now=NOW, unschedulable_after_s=1, read_log=no_log)
    assert (s.phase, s.reason_class) == ("succeeded", None)


def test_unschedulable_only_after_the_limit() -> None:
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        "lastTransitionTime": ts(30),
    }
    pending = pod("Pending", age=30, conditions=[cond])
    assert state(job(), [pending], limit=60).phase == "pending"
    late = state(job(), [pending], limit=10)
    assert (late.phase, late.reason_class) == ("failed", "unschedulable")
    assert "Insufficient nvidia.com/gpu" in late.message


def test_first_pull_error_waits_backoff_fails() -> None:
    def waiting(reason: str) -> dict[str, Any]:
        return pod(
            "Pending",
            node="n",
            containerStatuses=[{"name": m.CONTAINER, "state": {"waiting": {"reason": reason, "message": "x"}}}],
        )

    assert state(job(), [waiting("ErrImagePull")]).phase == "pending"
    assert state(job(), [waiting("ImagePullBackOff")]).reason_class == "image_pull"


def test_deletion_is_cancelled_and_no_pods_for_long_is_unschedulable() -> None:
    deleting = job()
    deleting["metadata"]["deletionTimestamp"] = ts(1)
    assert state(deleting, []).phase == "cancelled"
    assert state(job(age=120), [], limit=60).reason_class == "unschedulable"
    assert state(job(age=5), [], limit=60).phase == "pending"


def test_failed_job_with_opencompass_errors_is_task_errors() -> None:
    log = (
        "11/23 08:16:44 - OpenCompass - ERROR - runners/local.py - _launch - 241 - task OpenICLInfer[m/d] fail, see\n"
        "Traceback ...\n"
    )
    failed = pod(
        "Failed",
        node="n",
        containerStatuses=[{"name": m.CONTAINER, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
    )
    s = state(job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]), [failed], log=log)
    assert s.reason_class == "task_errors" and "OpenICLInfer[m/d]" in s.log_excerpt
    assert task_failure_lines("INFO fine\nsomething ERROR but not OpenCompass's format\n") == []


def test_redact_masks_credentials() -> None:
    text = redact("key sk-abcdefghijklmnop Authorization: Bearer xyz123 api_key=hunter2 password: p4ss")
    for secret in ("sk-abcdefghijklmnop", "xyz123", "hunter2", "p4ss"):
        assert secret not in text


# -- Kueue: a workload never admitted --------------------------------------------------------------------------------
def queued_job(age: float, suspended_since: float | None = None) -> dict[str, Any]:
    j = job(age=age)
    j["metadata"]["labels"][m.LABEL_QUEUE] = "gpu-queue"
    j["metadata"]["namespace"] = "evals"
    j["spec"]["suspend"] = True
    if suspended_since is not None:
        j["status"]["conditions"] = [{"type": "Suspended", "status": "True", "lastTransitionTime": ts(suspended_since)}]
    return j


def kueue_state(j: dict[str, Any], pods: list[dict[str, Any]], timeout: float) -> Any:
    return run_state(j, pods, now=NOW, unschedulable_after_s=60, read_log=no_log, kueue_admission_timeout_s=timeout)


def test_an_unadmitted_kueue_job_fails_only_after_the_admission_timeout() -> None:
    assert kueue_state(queued_job(age=299), [], 300).phase == "pending"
    s = kueue_state(queued_job(age=301), [], 300)
    assert (s.phase, s.reason_class) == ("failed", "unschedulable")
    assert "LocalQueue 'gpu-queue' exists in evals" in s.message and "is suspended" in s.message
    assert kueue_state(queued_job(age=10_000), [], 0).phase == "pending"  # 0: wait for the evaluation's timeout


def test_a_job_suspended_again_counts_from_its_suspension() -> None:
    # admitted long ago, preempted (suspended again) 10 s ago: not a never-admitted workload yet
    assert kueue_state(queued_job(age=10_000, suspended_since=10), [], 300).phase == "pending"
    assert kueue_state(queued_job(age=10_000, suspended_since=400), [], 300).phase == "failed"


def test_an_admitted_kueue_job_with_a_pod_is_not_judged_by_admission() -> None:
    j = queued_job(age=10_000)
    j["spec"]["suspend"] = False
    assert kueue_state(j, [pod("Running", node="n1")], 300).phase == "running"
    assert kueue_state(j, [pod("Pending", age=10)], 300).phase == "pending"  # the pod's own limit applies


def test_a_job_without_a_queue_is_unaffected() -> None:
    j = job(age=30)
    j["spec"]["suspend"] = True  # suspended by hand: pending, no admission deadline
    assert kueue_state(j, [], 1).phase == "pending"
