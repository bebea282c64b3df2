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

import contextlib
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import dapr.ext.workflow as wf

from budeval.backends.base import RunState
from budeval.workflow import names
from budeval.workflow.models import (
    CancelInput,
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
    attempt = inp.attempt
    started_at = ctx.current_utc_datetime
    deadline = started_at + timedelta(seconds=request.timeout_s)
    # One waiter for the whole evaluation (``DELETE /evals/{id}`` raises it). Waiting is no action in the history,
    # so histories recorded before cancel was an event replay unchanged (docs/workflow.md "Upgrades").
    cancel = ctx.wait_for_external_event(names.CANCEL_EVENT)

    prepare = PrepareInput(request=request.model_dump(mode="json"), started_at=started_at.isoformat(),
                           attempt=attempt)
    try:
        prepared = Prepared.model_validate(
            (yield ctx.call_activity(names.PREPARE, input=prepare.model_dump(mode="json"), retry_policy=policy))
        )
    except wf.TaskFailedError as exc:  # the store or the broker stayed down through every retry
        why = f"prepare failed: {_failure_message(exc)}"
        yield _publish(ctx, eval_id, "failed", names.event_id(eval_id, "failed", attempt),
                       {"status": "failed", "reason": why}, policy)
        return EvaluationResult(eval_id=eval_id, outcome="failed", reason=why).model_dump(mode="json")
    if prepared.rejected is not None or prepared.validated is None:
        rejected = prepared.rejected or "invalid request"
        yield _publish(ctx, eval_id, "rejected", names.event_id(eval_id, "rejected", attempt), {"reason": rejected},
                       policy)
        return EvaluationResult(eval_id=eval_id, outcome="rejected", reason=rejected).model_dump(mode="json")
    validated = prepared.validated

    def cancelled(running: list[tuple[Any, str]], outcomes: list[RunOutcome]) -> Gen:
        """Stop the runs (their child workflows end at once), record and announce, then wait for the child workflows
        and stop once more whatever a submit racing the cancel started."""
        stop = CancelInput(eval_id=eval_id, running=[run_id for _, run_id in running], validated=validated,
                           started_at=started_at.isoformat(), finished_at=started_at.isoformat(), attempt=attempt)
        yield ctx.call_activity(names.STOP_RUNS, input=stop.model_dump(mode="json"), retry_policy=policy)
        final = stop.model_copy(update={"running": [], "runs": outcomes,
                                        "finished_at": ctx.current_utc_datetime.isoformat()})
        done = yield ctx.call_activity(names.CANCEL, input=final.model_dump(mode="json"), retry_policy=policy)
        for child, _ in running:
            with contextlib.suppress(wf.TaskFailedError):  # a child that failed has nothing to add
                outcomes.append(RunOutcome.model_validate((yield child)))
        if running:
            sweep = stop.model_copy(update={"running": []})
            yield ctx.call_activity(names.STOP_RUNS, input=sweep.model_dump(mode="json"), retry_policy=policy)
        scores = list((done or {}).get("scores", []))
        return EvaluationResult(eval_id=eval_id, outcome="cancelled", reason=names.CANCEL_REASON,
                                failures=failures(outcomes), scores=scores).model_dump(mode="json")

    def finalize(result: EvaluationResult, runs: list[RunOutcome], **extra: Any) -> Any:
        now = ctx.current_utc_datetime
        window = inp.retry_window_s
        finalize_input = FinalizeInput(
            validated=validated,
            outcome=result.outcome,
            runs=runs,
            archive_url=result.archive_url,
            reason=result.reason,
            started_at=started_at.isoformat(),
            finished_at=now.isoformat(),
            reused_from=result.reused_from,
            result=result,
            archive_deadline=None if window is None else (now + timedelta(seconds=window)).isoformat(),
            attempt=attempt,
            **extra,
        )
        # The archive may take the whole window before it is left pending; the row and the event get another one.
        finalize_policy = policy if window is None else transient(2 * window)
        return ctx.call_activity(names.FINALIZE, input=finalize_input.model_dump(mode="json"),
                                 retry_policy=finalize_policy)

    if cancel.is_complete:
        return (yield from cancelled([], []))
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
                attempt=attempt,
            )
            child = ctx.call_child_workflow(
                names.RUN_WORKFLOW,
                input=run_input.model_dump(mode="json"),
                instance_id=names.run_instance_id(eval_id, spec.run_id),
            )
            running.append((child, spec.run_id))
        done = yield wf.when_any([task for task, _ in running] + [cancel])
        if done is cancel:
            return (yield from cancelled(running, outcomes))
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
    if cancel.is_complete:  # raised while the last run was being collected: the cancel still wins over finalize
        return (yield from cancelled([], outcomes))

    outcome_name, reason = classify(outcomes, prepared.render_error)
    result = EvaluationResult(
        eval_id=eval_id,
        outcome=outcome_name,
        reason=reason,
        failures=failures(outcomes),
        scores=[m.model_dump(mode="json") for o in outcomes for m in o.metrics],
    )
    config_hashes = rendered.config_hashes if rendered is not None else {}
    # From here on a cancel comes too late: finalize publishes the evaluation's one final event.
    try:
        finalized = yield finalize(result, outcomes, config_hashes=config_hashes)
    except wf.TaskFailedError as exc:  # the rows are stored; the store or the broker stayed down through every retry
        # The row may still say `running`: the service's reconciler corrects it from this output once the store is
        # back (budeval/service/housekeeping.py).
        why = f"finalize failed: {_failure_message(exc)}"
        yield _publish(ctx, eval_id, "failed", names.event_id(eval_id, "failed", attempt),
                       {"status": "failed", "reason": why}, policy)
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
        event_id = names.event_id(spec.eval_id, "progress", inp.attempt, spec.run_id)
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

    def stopped() -> dict[str, Any]:
        """The evaluation was cancelled (its ``stop_runs`` raised the event here): end now, quietly -- the parent
        stops the backend's runs (again, after this ends) and publishes ``cancelled``."""
        state = RunState(eval_id=spec.eval_id, run_id=spec.run_id, phase="cancelled", reason_class="cancelled",
                         message=names.CANCEL_REASON)
        return RunOutcome(run_id=spec.run_id, datasets=spec.datasets, state=state,
                          error=names.CANCEL_REASON).model_dump(mode="json")

    # Waiting is no action in the history: histories recorded before cancel was an event replay unchanged.
    cancel = ctx.wait_for_external_event(names.CANCEL_EVENT)
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
        if cancel.is_complete:
            return stopped()
        now = ctx.current_utc_datetime
        if now >= deadline:
            # The backend's run is cleaned up by the evaluation's finalize, like every other run.
            late = failed("deadline_exceeded", "the evaluation's timeout passed before the run finished")
            return (yield from ended(late))
        timer = ctx.create_timer(min(now + timedelta(seconds=delay), deadline))
        winner = yield wf.when_any([finished_event, timer, cancel])
        if winner is cancel:
            return stopped()
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
            # The backend lost the run (e.g. deleted by hand): submit it again -- unless a cancel deleted it.
            if state.phase == "unknown" and not cancel.is_complete:
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

    if cancel.is_complete:
        return stopped()
    where = CollectInput(eval_id=spec.eval_id, run_id=spec.run_id, datasets=spec.datasets, state=state,
                         attempt=inp.attempt)
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

