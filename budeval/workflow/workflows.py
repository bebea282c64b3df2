"""The evaluation workflow and its per-run child workflow (deterministic: no I/O, clocks or randomness here).

    evaluation:  validate -> dedupe -> begin (record + `started`) -> render -> runs (child workflows, at most
                 ``max_parallel_runs`` at once, a `progress` event as each ends) -> archive -> finish (record)
                 -> publish `completed`/`failed` -> clean up
    evaluation_run:  submit -> wait (external event `run_finished`, durable-timer poll with backoff as the
                 fallback, evaluation deadline) -> extract -> store

Every side effect is an activity called by name (``names``); activity results are plain JSON in the history and
are re-validated into models here. Failures of runs are data (``RunOutcome``), not exceptions, so one failed
dataset makes the evaluation ``partial`` instead of failing it.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import dapr.ext.workflow as wf

from budeval.backends.base import RunState
from budeval.workflow import names
from budeval.workflow.models import (
    Archived,
    ArchiveInput,
    CleanupInput,
    EvalOutcome,
    EvaluationResult,
    EventInput,
    Extracted,
    ExtractInput,
    FinishInput,
    RenderedRuns,
    Reusable,
    RunInput,
    RunOutcome,
    Stored,
    ValidatedRequest,
    WorkflowInput,
)
from budeval.workflow.policies import QUICK, TRANSIENT

Gen = Generator[Any, Any, dict[str, Any]]


def _failure_message(exc: Exception) -> str:
    details = getattr(exc, "details", None)
    if details is not None:
        kind = getattr(details, "error_type", "") or ""
        msg = getattr(details, "message", "") or str(exc)
        return f"{kind}: {msg}" if kind else msg
    return str(exc)


def _publish(ctx: wf.DaprWorkflowContext, eval_id: str, kind: str, event_id: str, data: dict[str, Any]) -> Any:
    event = EventInput(eval_id=eval_id, kind=kind, event_id=event_id, data=data)  # type: ignore[arg-type]
    return ctx.call_activity(names.PUBLISH, input=event.model_dump(mode="json"), retry_policy=TRANSIENT)


def evaluation_workflow(ctx: wf.DaprWorkflowContext, payload: dict[str, Any]) -> Gen:
    inp = WorkflowInput.model_validate(payload)
    request = inp.request
    eval_id = request.eval_id
    started_at = ctx.current_utc_datetime
    deadline = started_at + timedelta(seconds=request.timeout_s)

    try:
        validated = ValidatedRequest.model_validate(
            (yield ctx.call_activity(names.VALIDATE, input=request.model_dump(mode="json"), retry_policy=QUICK))
        )
    except wf.TaskFailedError as exc:
        rejected = _failure_message(exc)
        yield _publish(ctx, eval_id, "rejected", f"{eval_id}.rejected", {"reason": rejected})
        return EvaluationResult(eval_id=eval_id, outcome="rejected", reason=rejected).model_dump(mode="json")

    if not request.force:
        reusable = Reusable.model_validate(
            (yield ctx.call_activity(names.DEDUPE, input=validated.model_dump(mode="json"), retry_policy=TRANSIENT))
        )
        if reusable.found:
            yield ctx.call_activity(
                names.FINISH,
                input=FinishInput(
                    validated=validated,
                    outcome="reused",
                    runs=[],
                    archive_url=reusable.archive_url,
                    reason=None,
                    started_at=started_at.isoformat(),
                    finished_at=ctx.current_utc_datetime.isoformat(),
                    reused_from=reusable.reused_from,
                ).model_dump(mode="json"),
                retry_policy=TRANSIENT,
            )
            data = {
                "status": "reused",
                "reused_from": reusable.reused_from,
                "archive_url": reusable.archive_url,
                "scores": reusable.scores,
            }
            yield _publish(ctx, eval_id, "completed", f"{eval_id}.completed", data)
            return EvaluationResult(
                eval_id=eval_id,
                outcome="reused",
                reused_from=reusable.reused_from,
                archive_url=reusable.archive_url,
                scores=reusable.scores,
            ).model_dump(mode="json")

    yield ctx.call_activity(names.BEGIN, input=validated.model_dump(mode="json"), retry_policy=TRANSIENT)
    yield _publish(
        ctx,
        eval_id,
        "started",
        f"{eval_id}.started",
        {"status": "running", "runs": [r.model_dump(mode="json") for r in validated.runs]},
    )

    try:
        rendered = RenderedRuns.model_validate(
            (yield ctx.call_activity(names.RENDER, input=validated.model_dump(mode="json"), retry_policy=QUICK))
        )
    except wf.TaskFailedError as exc:
        rendered = RenderedRuns(specs=[], config_hashes={})
        render_error: str | None = _failure_message(exc)
    else:
        render_error = None

    outcomes: list[RunOutcome] = []
    pending = list(rendered.specs)
    running: list[tuple[Any, str]] = []
    while pending or running:
        while pending and len(running) < max(1, inp.max_parallel_runs):
            spec = pending.pop(0)
            run_input = RunInput(
                spec=spec, poll_initial_s=inp.poll_initial_s, poll_max_s=inp.poll_max_s, deadline=deadline.isoformat()
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
        yield _publish(ctx, eval_id, "progress", f"{eval_id}.progress.{run_id}", _progress_data(outcome))

    outcome_name, classified = _classify(outcomes, render_error)
    reason: str | None = classified
    provenance = {"config_hashes": rendered.config_hashes, "params_hash": validated.params_hash}
    archived = Archived.model_validate(
        (
            yield ctx.call_activity(
                names.ARCHIVE,
                input=ArchiveInput(eval_id=eval_id, provenance=provenance).model_dump(mode="json"),
                retry_policy=TRANSIENT,
            )
        )
    )
    if archived.error:
        # The rows are stored and the raw files stay on the results volume; say so rather than fail the scores.
        reason = f"{reason + '; ' if reason else ''}archive failed: {archived.error}"

    finished_at = ctx.current_utc_datetime
    yield ctx.call_activity(
        names.FINISH,
        input=FinishInput(
            validated=validated,
            outcome=outcome_name,
            runs=outcomes,
            archive_url=archived.url,
            reason=reason,
            started_at=started_at.isoformat(),
            finished_at=finished_at.isoformat(),
            config_hashes=rendered.config_hashes,
        ).model_dump(mode="json"),
        retry_policy=TRANSIENT,
    )
    result = EvaluationResult(
        eval_id=eval_id,
        outcome=outcome_name,
        reason=reason,
        archive_url=archived.url,
        failures=_failures(outcomes),
        scores=[m.model_dump(mode="json") for o in outcomes for m in o.metrics],
    )
    kind = "failed" if outcome_name == "failed" else "completed"
    event = result.model_dump(mode="json")
    event["status"] = outcome_name
    event["provenance"] = provenance
    yield _publish(ctx, eval_id, kind, f"{eval_id}.{kind}", event)
    yield ctx.call_activity(
        names.CLEANUP,
        input=CleanupInput(eval_id=eval_id, run_ids=[o.run_id for o in outcomes]).model_dump(mode="json"),
        retry_policy=TRANSIENT,
    )
    return result.model_dump(mode="json")


def evaluation_run_workflow(ctx: wf.DaprWorkflowContext, payload: dict[str, Any]) -> Gen:
    inp = RunInput.model_validate(payload)
    spec = inp.spec
    deadline = datetime.fromisoformat(inp.deadline)

    def outcome(state: RunState, **extra: Any) -> dict[str, Any]:
        return RunOutcome(run_id=spec.run_id, datasets=spec.datasets, state=state, **extra).model_dump(mode="json")

    def failed(reason_class: str, message: str, log_excerpt: str = "") -> dict[str, Any]:
        state = RunState(
            eval_id=spec.eval_id,
            run_id=spec.run_id,
            phase="failed",
            reason_class=reason_class,  # type: ignore[arg-type]
            message=message,
            log_excerpt=log_excerpt,
        )
        return outcome(state, error=message)

    try:
        state = RunState.model_validate(
            (yield ctx.call_activity(names.SUBMIT, input=spec.model_dump(mode="json"), retry_policy=TRANSIENT))
        )
    except wf.TaskFailedError as exc:
        return failed("unknown", f"submit failed: {_failure_message(exc)}")

    # One waiter for the whole run: a fresh waiter per loop would leave stale ones that swallow the event.
    finished_event = ctx.wait_for_external_event(names.RUN_FINISHED_EVENT)
    delay = inp.poll_initial_s
    while not state.finished:
        now = ctx.current_utc_datetime
        if now >= deadline:
            yield ctx.call_activity(
                names.CLEANUP,
                input=CleanupInput(eval_id=spec.eval_id, run_ids=[spec.run_id]).model_dump(mode="json"),
                retry_policy=TRANSIENT,
            )
            return failed("deadline_exceeded", "the evaluation's timeout passed before the run finished")
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
                (yield ctx.call_activity(names.CHECK, input=spec.model_dump(mode="json"), retry_policy=TRANSIENT))
            )
        except wf.TaskFailedError as exc:
            return failed("unknown", f"status check failed: {_failure_message(exc)}")

    if state.phase != "succeeded":
        return outcome(state, error=state.message or state.phase)

    where = ExtractInput(eval_id=spec.eval_id, run_id=spec.run_id).model_dump(mode="json")
    try:
        extracted = Extracted.model_validate(
            (yield ctx.call_activity(names.EXTRACT, input=where, retry_policy=QUICK))
        )
        stored = Stored.model_validate((yield ctx.call_activity(names.STORE, input=where, retry_policy=TRANSIENT)))
    except wf.TaskFailedError as exc:
        return outcome(state, error=_failure_message(exc))
    return outcome(state, metrics=extracted.metrics, statuses=extracted.statuses, predictions=stored.predictions)


def _progress_data(outcome: RunOutcome) -> dict[str, Any]:
    return {
        "run_id": outcome.run_id,
        "datasets": outcome.datasets,
        "phase": outcome.state.phase,
        "ok": outcome.ok,
        "error": outcome.error,
        "scores": [m.model_dump(mode="json") for m in outcome.metrics],
    }


def _classify(outcomes: list[RunOutcome], render_error: str | None) -> tuple[EvalOutcome, str | None]:
    if render_error is not None:
        return "failed", render_error
    scored = [m for o in outcomes for m in o.metrics if m.score is not None]
    bad = _failures(outcomes)
    if not scored:
        return "failed", "; ".join(f"{f['run_id']}: {f['reason']}" for f in bad) or "no scores"
    if bad:
        return "partial", "; ".join(f"{f['run_id']}/{f.get('dataset', '*')}: {f['reason']}" for f in bad)
    return "completed", None


def _failures(outcomes: list[RunOutcome]) -> list[dict[str, Any]]:
    failures: list[dict[str, Any]] = []
    for o in outcomes:
        if not o.ok:
            failures.append(
                {
                    "run_id": o.run_id,
                    "datasets": o.datasets,
                    "reason_class": o.state.reason_class or "unknown",
                    "reason": o.error or o.state.message or o.state.phase,
                    "log_excerpt": o.state.log_excerpt[-2000:],
                }
            )
            continue
        for s in o.statuses:
            if s.status != "ok":
                failures.append(
                    {
                        "run_id": o.run_id,
                        "model": s.model,
                        "dataset": s.dataset,
                        "reason_class": s.status,
                        "reason": s.reason or s.status,
                    }
                )
    return failures
