"""How an evaluation ends: finalize (archive -> row -> final event -> clean up), cancel (stop runs -> row ->
``cancelled``), and the supersede step of a re-run. A mixin of :class:`budeval.workflow.activities.EvalActivities`
(which provides ``deps``, ``_count``, ``_publish``, ``_record`` and ``_provenance``); every step is idempotent.

Outage-proof finalize: an archive that stays unreachable past ``FinalizeInput.archive_deadline`` (the workflow's
retry window) no longer fails the activity: the evaluation finishes with what is stored and ``archive_pending`` on
its row; the service's housekeeping loop archives it later (budeval/service/housekeeping.py).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from typing import Any

from budeval.logs import get_logger
from budeval.storage.base import EvaluationRecord
from budeval.workflow import names, provenance, steps
from budeval.workflow.deps import Deps
from budeval.workflow.models import (
    Archived,
    ArchiveInput,
    CancelInput,
    CleanupInput,
    EventInput,
    FinalizeInput,
    FinishInput,
    ValidatedRequest,
)

#: Where a re-run moves the earlier attempt's run folders (under the results root): superseded, kept for a look.
SUPERSEDED_DIR = ".superseded"
CANCEL_REASON = names.CANCEL_REASON


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class OutcomeSteps:
    """Finalize, cancel and supersede (see the module docstring)."""

    deps: Deps

    def _count(self, name: str) -> None:
        raise NotImplementedError

    def _publish(self, inp: EventInput) -> None:
        raise NotImplementedError

    def _record(self, validated: ValidatedRequest, status: Any) -> EvaluationRecord:
        raise NotImplementedError

    def _provenance(self, extra: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    # -- activities ------------------------------------------------------------------------------------------------
    def finalize_evaluation(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        """archive -> finish (the row's final status and provenance) -> the final event -> clean up the runs.

        Returns the evaluation's result with the archive's location (and the archive's failure in ``reason``: the
        rows are stored and the raw files stay on the results volume, so a failed archive does not fail the scores).
        """
        inp = FinalizeInput.model_validate(payload)
        result = inp.result.model_copy()
        manifest = {"config_hashes": inp.config_hashes, "params_hash": inp.validated.params_hash}
        pending: str | None = None
        if inp.archive:
            archived = self.archive_evaluation(ArchiveInput(eval_id=result.eval_id, provenance=manifest),
                                               inp.archive_deadline)
            result.archive_url = archived.url
            if archived.pending:
                pending = archived.error
            elif archived.error:
                result.reason = f"{result.reason + '; ' if result.reason else ''}archive failed: {archived.error}"
        result.archive_pending = pending is not None
        if result.outcome == "reused" and result.reused_from:
            result.scores = self.copy_results(result.reused_from, inp.validated)
        record = self.finish_evaluation(
            inp.model_copy(update={"archive_url": result.archive_url, "reason": result.reason,
                                   "archive_pending": pending is not None, "archive_pending_reason": pending})
        )
        kind = "failed" if result.outcome == "failed" else "completed"
        event = result.model_dump(mode="json") | {
            "status": result.outcome,
            "reused": result.outcome == "reused",
            "provenance": provenance.summary(record),
        }
        self._publish(EventInput(eval_id=result.eval_id, kind=kind,
                                 event_id=names.event_id(result.eval_id, kind, inp.attempt), data=event))
        self.cleanup_runs(CleanupInput(eval_id=result.eval_id, run_ids=[o.run_id for o in inp.runs]))
        return result.model_dump(mode="json")

    def stop_runs(self, ctx: Any, payload: dict[str, Any]) -> None:
        """The first half of a cancel: the cancel goes into every run's child workflow still going (each ends at
        once), and the backend stops the evaluation's runs."""
        inp = CancelInput.model_validate(payload)
        self._count(names.STOP_RUNS)
        raise_event = self.deps.raise_event
        for run_id in inp.running:
            if raise_event is None:
                break
            try:
                raise_event(names.run_instance_id(inp.eval_id, run_id), names.CANCEL_EVENT, {"reason": CANCEL_REASON})
            except Exception as exc:  # gone already: nothing to tell
                get_logger(eval_id=inp.eval_id, run_id=run_id).warning("cancel not raised", error=type(exc).__name__)
        self.deps.backend.cancel(inp.eval_id)

    def cancel_evaluation(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        """The second half (the runs are told and stopped): write the row ``cancelled`` (rows of runs stored before
        stay), publish ``cancelled``. The workflow then waits for its runs' child workflows and calls ``stop_runs``
        once more for what a submit racing the cancel may have started."""
        inp = CancelInput.model_validate(payload)
        self._count(names.CANCEL)
        if inp.validated is not None:
            record = self._record(inp.validated, "cancelled")
        else:
            record = self.deps.store.get_evaluation(inp.eval_id) or EvaluationRecord(eval_id=inp.eval_id,
                                                                                    status="cancelled")
        record = record.model_copy(update={"status": "cancelled", "reason": CANCEL_REASON,
                                           "created_at": _aware(inp.started_at),
                                           "finished_at": _aware(inp.finished_at)})
        extra: dict[str, Any] = {"started_at": inp.started_at, "finished_at": inp.finished_at}
        if inp.attempt > 1:
            extra["attempt"] = inp.attempt
        steps.finish_evaluation(self.deps.store, record, inp.runs, extra)
        scores = [s.model_dump(mode="json") for s in self.deps.store.results(inp.eval_id)]
        data = {"status": "cancelled", "reason": CANCEL_REASON, "scores": scores}
        self._publish(EventInput(eval_id=inp.eval_id, kind="cancelled",
                                 event_id=names.event_id(inp.eval_id, "cancelled", inp.attempt), data=data))
        get_logger(eval_id=inp.eval_id).info("evaluation cancelled")
        return {"scores": scores}

    # -- steps -----------------------------------------------------------------------------------------------------
    def supersede_attempt(self, eval_id: str, attempt: int) -> None:
        """A re-run (attempt > 1) replaces the earlier attempt: its runs stopped, its run folders moved to
        ``{results_root}/.superseded/{eval_id}.attempt{n}`` (a backend never starts a run twice in one folder), its
        score, status and prediction rows deleted. Idempotent (a second call finds nothing left to move)."""
        self._count(names.SUPERSEDE)
        self.deps.backend.cancel(eval_id)
        root = self.deps.settings.resolved_results_root()
        earlier = root / eval_id
        if earlier.is_dir():
            target = root / SUPERSEDED_DIR / f"{eval_id}.attempt{attempt - 1}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            earlier.rename(target)
        self.deps.store.clear_results(eval_id)
        get_logger(eval_id=eval_id).info("earlier attempt superseded", attempt=attempt)

    def archive_evaluation(self, inp: ArchiveInput, deadline: str | None = None) -> Archived:
        """The evaluation's results folder under prefix ``{eval_id}`` (:func:`budeval.workflow.steps.archive_folder`):
        a terminal refusal comes back in ``error``; a transient failure propagates (the activity retries) until
        ``deadline`` has passed, then it comes back as ``pending``."""
        self._count(names.ARCHIVE)
        source = self.deps.settings.resolved_results_root() / inp.eval_id
        try:
            return steps.archive_folder(self.deps.archive, source, inp.eval_id, self._provenance(inp.provenance))
        except Exception as exc:
            if deadline is None or datetime.now(UTC) < _aware(deadline):
                raise
            get_logger(eval_id=inp.eval_id).warning("archive unreachable past the retry window; pending",
                                                    error=str(exc)[:300])
            return Archived(url=None, error=f"{type(exc).__name__}: {str(exc)[:500]}", pending=True)

    def finish_evaluation(self, inp: FinishInput) -> EvaluationRecord:
        self._count(names.FINISH)
        record = self._record(inp.validated, inp.outcome)
        record.reused_from = inp.reused_from
        record.reason = inp.reason
        record.archive_url = inp.archive_url
        record.archive_pending = inp.archive_pending
        record.created_at = datetime.fromisoformat(inp.started_at)
        record.finished_at = datetime.fromisoformat(inp.finished_at)
        extra: dict[str, Any] = {"config_hashes": inp.config_hashes, "started_at": inp.started_at,
                                 "finished_at": inp.finished_at}
        attempt = getattr(inp, "attempt", 1)
        if attempt > 1:  # a re-run: admission reads it when the workflow is gone (then the next one is attempt + 1)
            extra["attempt"] = attempt
        if inp.archive_pending_reason:
            extra["archive_pending_reason"] = inp.archive_pending_reason
        return steps.finish_evaluation(self.deps.store, record, inp.runs, extra)

    def copy_results(self, source_eval: str, validated: ValidatedRequest) -> list[dict[str, Any]]:
        """A reused evaluation's own score rows (copied from the evaluation it reuses, under its model name), so
        results, leaderboards and trends include it; returns them as the event's and the workflow's scores."""
        self._count(names.COPY_RESULTS)
        target = validated.request.eval_id
        self.deps.store.copy_results(source_eval, target, validated.request.model.name)
        return [s.model_dump(mode="json") for s in self.deps.store.results(target)]

    def cleanup_runs(self, inp: CleanupInput) -> None:
        """Best effort: the results are safe by now, and a Job left behind is removed by its TTL. Failing here would
        re-run the whole activity (archive, record, event) for a housekeeping step."""
        self._count(names.CLEANUP)
        for run_id in inp.run_ids:
            try:
                self.deps.backend.cleanup(inp.eval_id, run_id)
            except Exception as exc:
                get_logger(eval_id=inp.eval_id, run_id=run_id).warning("run cleanup failed", error=str(exc)[:300])
