"""Turns a Job and its pods (raw API dicts) into a :class:`RunState`, classifying failures: pure, no I/O.

Logs are read lazily through ``read_log`` (``pods/log``) only when a failure needs an excerpt, so a successful run
costs no log request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from budeval.backends.base import FailureClass, RunPhase, RunState
from budeval.backends.kubernetes.manifests import CONTAINER, LABEL_EVAL, LABEL_QUEUE, LABEL_RUN
from budeval.engine.results.layout import excerpt, task_failure_lines
from budeval.masking import redact

#: Reads a pod's log (its tail); returns "" when no log can be had.
LogReader = Callable[[str], str]

#: Waiting reasons that mean the image will not come: the kubelet failed and is backing off, or cannot ever pull.
IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"})
#: Waiting reasons of a container that starts and dies in a loop (only with restartPolicy OnFailure/Always).
CRASH_REASONS = frozenset({"CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError"})


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The first condition of type ``kind`` in a Kubernetes object's ``status.conditions`` (a copy), else None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return dict(status)
    return {}


def _created(obj: dict[str, Any]) -> datetime:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp")) or datetime.now(UTC)


def ended_with_reason(pod: dict[str, Any]) -> bool:
    """Whether the pod's runner container says why it ended (terminated now or before, or waiting with a reason)."""
    status = _container_status(pod)
    state, last = status.get("state") or {}, status.get("lastState") or {}
    return bool(state.get("terminated") or last.get("terminated") or (state.get("waiting") or {}).get("reason"))


def _newest(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(pods, key=_created, default=None)


class _State:
    def __init__(self, job: dict[str, Any]) -> None:
        labels = (job.get("metadata") or {}).get("labels") or {}
        self.eval_id = str(labels.get(LABEL_EVAL, ""))
        self.run_id = str(labels.get(LABEL_RUN, ""))

    def make(
        self, phase: RunPhase, reason: FailureClass | None = None, message: str = "", log_excerpt: str = ""
    ) -> RunState:
        return RunState(
            eval_id=self.eval_id,
            run_id=self.run_id,
            phase=phase,
            reason_class=reason,
            message=redact(message)[:1000],
            log_excerpt=log_excerpt,
        )


def _failed_pod_state(make: _State, pod: dict[str, Any] | None, read_log: LogReader, job_msg: str) -> RunState:
    if pod is None:
        return make.make("failed", "backoff_limit", f"job failed: {job_msg}")
    name = pod["metadata"]["name"]
    status = _container_status(pod)
    state = status.get("state") or {}
    last = status.get("lastState") or {}
    term = state.get("terminated") or last.get("terminated") or {}
    waiting = state.get("waiting") or {}
    if term.get("reason") == "OOMKilled":
        log = read_log(name)
        return make.make(
            "failed",
            "oom_killed",
            f"container {CONTAINER} of pod {name} was OOMKilled (exit code {term.get('exitCode', 137)}); "
            "raise resources.memory",
            excerpt(log),
        )
    if waiting.get("reason") in IMAGE_PULL_REASONS:
        return make.make("failed", "image_pull", f"pod {name}: {waiting.get('reason')}: {waiting.get('message', '')}")
    code = term.get("exitCode")
    if isinstance(code, int) and code != 0:
        log = read_log(name)
        errors = task_failure_lines(log)
        if errors:
            return make.make(
                "failed",
                "task_errors",
                f"OpenCompass reported {len(errors)} task error(s); runner exited with code {code}",
                excerpt("\n".join(errors), lines=20),
            )
        return make.make(
            "failed",
            "crash",
            f"container {CONTAINER} of pod {name} exited with code {code} ({term.get('reason') or 'Error'})",
            excerpt(log),
        )
    pod_status = pod.get("status") or {}
    why = pod_status.get("reason") or term.get("reason") or "no exit status"
    detail = pod_status.get("message") or term.get("message") or ""
    return make.make("failed", "backoff_limit", f"job failed: {job_msg}; last pod {name}: {why} {detail}".strip())


def _pending_problem(
    make: _State, pods: list[dict[str, Any]], now: datetime, unschedulable_after_s: float
) -> RunState | None:
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") or (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        name = pod["metadata"]["name"]
        waiting = (_container_status(pod).get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in IMAGE_PULL_REASONS:
            return make.make(
                "failed", "image_pull", f"pod {name}: {waiting.get('reason')}: {waiting.get('message', '')}".strip()
            )
        if waiting.get("reason") in CRASH_REASONS:
            return make.make("failed", "crash", f"pod {name}: {waiting.get('reason')}: {waiting.get('message', '')}")
        if phase != "Pending" or (pod.get("spec") or {}).get("nodeName"):
            continue
        sched = condition(pod, "PodScheduled")
        since = parse_time((sched or {}).get("lastTransitionTime")) or _created(pod)
        waited = (now - since).total_seconds()
        if waited >= unschedulable_after_s:
            why = "not scheduled"
            if sched is not None and sched.get("status") == "False":
                why = f"{sched.get('reason') or 'Unschedulable'}: {sched.get('message') or ''}".strip()
            return make.make("failed", "unschedulable", f"pod {name} pending for {waited:.0f} s: {why}")
    return None


def _unadmitted(make: _State, job: dict[str, Any], now: datetime, admission_timeout_s: float) -> RunState | None:
    """A Job handed to Kueue (the ``kueue.x-k8s.io/queue-name`` label) that has no pod: its workload is not admitted
    (Kueue keeps it suspended) -- the queue does not exist, or has no quota for it. Past ``admission_timeout_s``
    (since the Job was created, or last suspended: its ``Suspended`` condition) the run fails ``unschedulable``;
    before, None (still pending). ``admission_timeout_s`` 0: never. The caller checked there is no pod."""
    queue = ((job.get("metadata") or {}).get("labels") or {}).get(LABEL_QUEUE)
    if not queue or admission_timeout_s <= 0:
        return None
    suspended = condition(job, "Suspended")
    since = parse_time((suspended or {}).get("lastTransitionTime")) or _created(job)
    waited = (now - since).total_seconds()
    if waited < admission_timeout_s:
        return None
    state = "suspended" if (job.get("spec") or {}).get("suspend") else "without a pod"
    namespace = (job.get("metadata") or {}).get("namespace") or "the run's namespace"
    return make.make(
        "failed",
        "unschedulable",
        f"Kueue did not admit the run's workload within {waited:.0f} s (the Job is {state}): check that the "
        f"LocalQueue {queue!r} exists in {namespace} and its ClusterQueue has quota for the request "
        "(setting kueue_admission_timeout_s)",
    )


def run_state(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    *,
    now: datetime,
    unschedulable_after_s: float,
    read_log: LogReader,
    kueue_admission_timeout_s: float = 0.0,
) -> RunState:
    """The run's state from its Job and the Job's pods. ``kueue_admission_timeout_s``: see :func:`_unadmitted`."""
    make = _State(job)
    meta = job.get("metadata") or {}
    complete = condition(job, "Complete")
    if complete is not None and complete.get("status") == "True":
        return make.make("succeeded")
    failed = condition(job, "Failed")
    if failed is not None and failed.get("status") == "True":
        reason = failed.get("reason") or ""
        job_msg = f"{reason}: {failed.get('message') or ''}".strip(": ")
        if reason == "DeadlineExceeded":
            newest = _newest(pods)
            log = read_log(newest["metadata"]["name"]) if newest is not None else ""
            return make.make("failed", "deadline_exceeded", f"job failed: {job_msg}", excerpt(log))
        failed_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        # The pod cache can lag the Job's condition: prefer the newest pod whose container says why it ended.
        telling = [p for p in failed_pods or pods if ended_with_reason(p)]
        return _failed_pod_state(make, _newest(telling) or _newest(failed_pods) or _newest(pods), read_log, job_msg)
    if meta.get("deletionTimestamp"):
        return make.make("cancelled", "cancelled", "the Job is being deleted")
    problem = _pending_problem(make, pods, now, unschedulable_after_s)
    if problem is not None:
        return problem
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    if any((p.get("status") or {}).get("phase") == "Running" for p in live):
        return make.make("running")
    suspended = bool((job.get("spec") or {}).get("suspend"))
    if not live and (unadmitted := _unadmitted(make, job, now, kueue_admission_timeout_s)) is not None:
        return unadmitted
    if not pods and not suspended:
        waited = (now - _created(job)).total_seconds()
        if waited >= unschedulable_after_s:
            return make.make(
                "failed",
                "unschedulable",
                f"no pod was created in {waited:.0f} s (check the Job's events: quota, service account, admission)",
            )
    return make.make("pending")
