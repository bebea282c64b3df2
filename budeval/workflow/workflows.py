"""The evaluation workflow and its per-run child workflow (deterministic: no I/O, clocks or randomness here).

    evaluation:  prepare (validate -> dedupe -> render -> row `running` -> `started`) -> runs (child workflows, at
                 most ``max_parallel_runs`` at once) -> finalize (archive -> row with the outcome -> `completed` /
                 `failed` -> clean up)
    evaluation_run:  submit -> wait (external event `run_finished`, durable-timer poll with backoff as the
                 fallback, evaluation deadline) -> collect (extract -> store -> `progress`)

Every side effect is an activity called by name (``names``); activity results are plain JSON in the history and
are re-validated into models here. Activities are coarse (a few idempotent steps each) because every activity costs a
work item, a completion and a history replay; see :class:`budeval.workflow.activities.EvalActivities`. Failures of
runs are data (``RunOutcome``), not exceptions, so one failed dataset makes the evaluation ``partial`` instead of
failing it.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import dapr.ext.workflow as wf

from budeval.backends.base import RunState
from budeval.workflow import names
from budeval.workflow.models import (
    CheckInput,
    Collected,
    CollectInput,
    EvaluationResult,
    EventInput,
    FinalizeInput,
    GateInput,
    Prepared,
    PrepareInput,
    RunInput,
    RunOutcome,
    WorkflowInput,
)
from budeval.workflow.outcome import classify, failures
from budeval.workflow.policies import BackoffPolicy, transient

Gen = Generator[Any, Any, dict[str, Any]]


def _failure_message(exc: Exception) -> str:
    details = getattr(exc, "details", None)
    if details is not None:
        kind = getattr(details, "error_type", "") or ""
        msg = getattr(details, "message", "") or str(exc)
        return f"{kind}: {msg}" if kind else msg
    return str(exc)


def _publish(ctx: wf.DaprWorkflowContext, eval_id: str, kind: str, event_id: str, data: dict[str, Any],
             policy: BackoffPolicy) -> Any:
    event = EventInput(eval_id=eval_id, kind=kind, event_id=event_id, data=data)  # type: ignore[arg-type]
    return ctx.call_activity(names.PUBLISH, input=event.model_dump(mode="json"), retry_policy=policy)


def evaluation_workflow(ctx: wf.DaprWorkflowContext, payload: dict[str, Any]) -> Gen:
    inp = WorkflowInput.model_validate(payload)
    policy = transient(inp.retry_window_s, inp.retry_first_s, inp.retry_max_s)
    request = inp.request
    eval_id = request.eval_id
    started_at = ctx.current_utc_datetime
    deadline = started_at + timedelta(seconds=request.timeout_s)

    prepare = PrepareInput(request=request.model_dump(mode="json"), started_at=started_at.isoformat())
    try:
        prepared = Prepared.model_validate(
            (yield ctx.call_activity(names.PREPARE, input=prepare.model_dump(mode="json"), retry_policy=policy))
        )
    except wf.TaskFailedError as exc:  # the store or the broker stayed down through every retry
        why = f"prepare failed: {_failure_message(exc)}"
        yield _publish(ctx, eval_id, "failed", f"{eval_id}.failed", {"status": "failed", "reason": why}, policy)
        return EvaluationResult(eval_id=eval_id, outcome="failed", reason=why).model_dump(mode="json")
    if prepared.rejected is not None or prepared.validated is None:
        rejected = prepared.rejected or "invalid request"
        yield _publish(ctx, eval_id, "rejected", f"{eval_id}.rejected", {"reason": rejected}, policy)
        return EvaluationResult(eval_id=eval_id, outcome="rejected", reason=rejected).model_dump(mode="json")
    validated = prepared.validated

    def finalize(result: EvaluationResult, runs: list[RunOutcome], **extra: Any) -> Any:
        finalize_input = FinalizeInput(
            validated=validated,
            outcome=result.outcome,
            runs=runs,
            archive_url=result.archive_url,
            reason=result.reason,
            started_at=started_at.isoformat(),
            finished_at=ctx.current_utc_datetime.isoformat(),
            reused_from=result.reused_from,
            result=result,
            **extra,
        )
        return ctx.call_activity(names.FINALIZE, input=finalize_input.model_dump(mode="json"), retry_policy=policy)

    reusable = prepared.reusable
    if reusable is not None and reusable.found:
        reused = EvaluationResult(
            eval_id=eval_id,
            outcome="reused",
            reused_from=reusable.reused_from,
            archive_url=reusable.archive_url,
            scores=reusable.scores,
        )
        finalized = yield finalize(reused, [], archive=False)
        yield from _gate(ctx, inp, "reused", policy)
        return EvaluationResult.model_validate(finalized).model_dump(mode="json")

    rendered = prepared.rendered
    specs = list(rendered.specs) if rendered is not None else []
    outcomes: list[RunOutcome] = []
    running: list[tuple[Any, str]] = []
    while specs or running:
        while specs and len(running) < max(1, inp.max_parallel_runs):
            spec = specs.pop(0)
            run_input = RunInput(
                spec=spec, poll_initial_s=inp.poll_initial_s, poll_max_s=inp.poll_max_s, deadline=deadline.isoformat(),
                retry_window_s=inp.retry_window_s, retry_first_s=inp.retry_first_s, retry_max_s=inp.retry_max_s,
            )
            child = ctx.call_child_workflow(
                names.RUN_WORKFLOW,
                input=run_input.model_dump(mode="json"),
                instance_id=names.run_instance_id(eval_id, spec.run_id),
            )
            running.append((child, spec.run_id))
        done = yield wf.when_any([task for task, _ in running])
        position = next(i for i, (task, _) in enumerate(running) if task is done)
        _, run_id = running.pop(position)
        try:
            outcome = RunOutcome.model_validate(done.get_result())
        except wf.TaskFailedError as exc:
            message = _failure_message(exc)
            outcome = RunOutcome(
                run_id=run_id,
                datasets=[],
                state=RunState(eval_id=eval_id, run_id=run_id, phase="failed", reason_class="unknown", message=message),
                error=message,
            )
        outcomes.append(outcome)

    outcome_name, reason = classify(outcomes, prepared.render_error)
    result = EvaluationResult(
        eval_id=eval_id,
        outcome=outcome_name,
        reason=reason,
        failures=failures(outcomes),
        scores=[m.model_dump(mode="json") for o in outcomes for m in o.metrics],
    )
    config_hashes = rendered.config_hashes if rendered is not None else {}
    try:
        finalized = yield finalize(result, outcomes, config_hashes=config_hashes)
    except wf.TaskFailedError as exc:  # the rows are stored; the store or the broker stayed down through every retry
        why = f"finalize failed: {_failure_message(exc)}"
        yield _publish(ctx, eval_id, "failed", f"{eval_id}.failed", {"status": "failed", "reason": why}, policy)
        return result.model_copy(update={"outcome": "failed", "reason": why}).model_dump(mode="json")
    yield from _gate(ctx, inp, outcome_name, policy)
    return EvaluationResult.model_validate(finalized).model_dump(mode="json")


def _gate(ctx: wf.DaprWorkflowContext, inp: WorkflowInput, outcome: str, policy: BackoffPolicy) -> Gen:
    """The request's optional gate block, after a finished evaluation with scores (the activity publishes its event;
    a store that stays down through every retry is reported as ``gate.inconclusive``, never silently)."""
    request = inp.request
    if request.gate is None or outcome not in ("completed", "partial", "reused"):
        return {}
    gate_input = GateInput(eval_id=request.eval_id, spec=request.gate.model_dump(mode="json"))
    try:
        gated: dict[str, Any] = yield ctx.call_activity(
            names.GATE, input=gate_input.model_dump(mode="json"), retry_policy=policy
        )
        return gated
    except wf.TaskFailedError as exc:
        data = {"status": "inconclusive", "error": "gate_failed", "message": _failure_message(exc)}
        yield _publish(ctx, request.eval_id, "gate.inconclusive", f"{request.eval_id}.gate", data, policy)
        return data


def evaluation_run_workflow(ctx: wf.DaprWorkflowContext, payload: dict[str, Any]) -> Gen:
    inp = RunInput.model_validate(payload)
    policy = transient(inp.retry_window_s, inp.retry_first_s, inp.retry_max_s)
    spec = inp.spec
    deadline = datetime.fromisoformat(inp.deadline)

    def ended(result: RunOutcome) -> Gen:
        """A run that did not get to (or through) ``collect`` announces its end here (collect does it otherwise)."""
        event_id = f"{spec.eval_id}.progress.{spec.run_id}"
        yield _publish(ctx, spec.eval_id, "progress", event_id, result.progress(), policy)
        return result.model_dump(mode="json")

    def failed(reason_class: str, message: str, log_excerpt: str = "") -> RunOutcome:
        state = RunState(
            eval_id=spec.eval_id,
            run_id=spec.run_id,
            phase="failed",
            reason_class=reason_class,  # type: ignore[arg-type]
            message=message,
            log_excerpt=log_excerpt,
        )
        return RunOutcome(run_id=spec.run_id, datasets=spec.datasets, state=state, error=message)

    timings = {"submitted_at": ctx.current_utc_datetime.isoformat()}
    try:
        state = RunState.model_validate(
            (yield ctx.call_activity(names.SUBMIT, input=spec.model_dump(mode="json"), retry_policy=policy))
        )
    except wf.TaskFailedError as exc:
        return (yield from ended(failed("unknown", f"submit failed: {_failure_message(exc)}")))

    check = CheckInput(eval_id=spec.eval_id, run_id=spec.run_id)  # a reference: every poll's input is in the history
    # One waiter for the whole run: a fresh waiter per loop would leave stale ones that swallow the event.
    finished_event = ctx.wait_for_external_event(names.RUN_FINISHED_EVENT)
    delay = inp.poll_initial_s
    while not state.finished:
        now = ctx.current_utc_datetime
        if now >= deadline:
            # The backend's run is cleaned up by the evaluation's finalize, like every other run.
            late = failed("deadline_exceeded", "the evaluation's timeout passed before the run finished")
            return (yield from ended(late))
        timer = ctx.create_timer(min(now + timedelta(seconds=delay), deadline))
        winner = yield wf.when_any([finished_event, timer])
        if winner is finished_event:
            state = RunState.model_validate(finished_event.get_result())
            if not state.finished:  # only terminal phases are raised; anything else is re-checked
                finished_event = ctx.wait_for_external_event(names.RUN_FINISHED_EVENT)
            continue
        delay = min(delay * 2, inp.poll_max_s)
        try:
            state = RunState.model_validate(
                (yield ctx.call_activity(names.CHECK, input=check.model_dump(mode="json"), retry_policy=policy))
            )
            if state.phase == "unknown":  # the backend lost the run (e.g. deleted by hand): submit it again
                state = RunState.model_validate(
                    (yield ctx.call_activity(names.SUBMIT, input=spec.model_dump(mode="json"), retry_policy=policy))
                )
        except wf.TaskFailedError as exc:
            return (yield from ended(failed("unknown", f"status check failed: {_failure_message(exc)}")))

    timings["finished_at"] = ctx.current_utc_datetime.isoformat()
    if state.phase != "succeeded":
        return (
            yield from ended(
                RunOutcome(
                    run_id=spec.run_id,
                    datasets=spec.datasets,
                    state=state,
                    error=state.message or state.phase,
                    timings=timings,
                )
            )
        )

    where = CollectInput(eval_id=spec.eval_id, run_id=spec.run_id, datasets=spec.datasets, state=state)
    try:
        collected = Collected.model_validate(
            (yield ctx.call_activity(names.COLLECT, input=where.model_dump(mode="json"), retry_policy=policy))
        )
    except wf.TaskFailedError as exc:
        return (
            yield from ended(
                RunOutcome(run_id=spec.run_id, datasets=spec.datasets, state=state, error=_failure_message(exc))
            )
        )
    timings["collected_at"] = ctx.current_utc_datetime.isoformat()
    return collected.outcome(where, timings).model_dump(mode="json")

