"""One pydantic model in and one out per activity: fields may be added later, never changed in meaning."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from budeval.backends.base import RunSpec, RunState
from budeval.schemas.request import EvalRequest
from budeval.schemas.results import DatasetStatus, MetricRow

EvalOutcome = Literal["completed", "partial", "failed", "reused", "rejected", "cancelled"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkflowInput(Model):
    request: EvalRequest
    #: When the request was accepted (ISO 8601), for provenance; the workflow clock is ``ctx.current_utc_datetime``.
    received_at: str
    # Settings copied in at intake: workflow code may not read configuration (it would break replay determinism).
    max_parallel_runs: int = 2
    poll_initial_s: float = 5.0
    poll_max_s: float = 60.0
    #: How long activities retry transient failures (settings ``activity_retry_window_s``); None: the policy of
    #: histories recorded before it was a setting (budeval/workflow/policies.py).
    retry_window_s: float | None = None
    #: First and longest pause between those retries (settings ``activity_retry_first_s`` / ``_max_s``); the
    #: defaults are the policy of histories recorded before they were settings.
    retry_first_s: float = 1.0
    retry_max_s: float = 60.0
    #: 1, or n for the n-th run of this eval id (a ``force`` re-run of a failed or cancelled evaluation): the earlier
    #: attempt's rows and run folders are superseded by ``prepare`` and event ids carry the attempt.
    attempt: int = 1


class RunPlan(Model):
    run_id: str
    datasets: list[str]


class ValidatedRequest(Model):
    request: EvalRequest
    #: The identity hash of the work (``budeval.engine.identity``); "" when unresolved (never reused).
    params_hash: str
    engine_version: str
    runs: list[RunPlan]
    #: ``Identity`` as JSON: ``hash``, ``components``, ``unresolved`` (empty in histories of older budevals).
    identity: dict[str, Any] = Field(default_factory=dict)


class Reusable(Model):
    found: bool
    reused_from: str | None = None
    archive_url: str | None = None
    scores: list[dict[str, Any]] = Field(default_factory=list)


class RenderedRuns(Model):
    specs: list[RunSpec]
    config_hashes: dict[str, str]


class RunInput(Model):
    spec: RunSpec
    poll_initial_s: float
    poll_max_s: float
    #: Absolute deadline of the whole evaluation (ISO 8601, UTC).
    deadline: str
    #: See :attr:`WorkflowInput.retry_window_s` and the two after it.
    retry_window_s: float | None = None
    retry_first_s: float = 1.0
    retry_max_s: float = 60.0
    #: See :attr:`WorkflowInput.attempt`.
    attempt: int = 1


class RunOutcome(Model):
    run_id: str
    datasets: list[str]
    state: RunState
    metrics: list[MetricRow] = Field(default_factory=list)
    statuses: list[DatasetStatus] = Field(default_factory=list)
    predictions: int = 0
    error: str | None = None
    #: What the run itself recorded about its runner (budeval.engine.environment), and the OpenCompass version it ran.
    environment: dict[str, Any] = Field(default_factory=dict)
    opencompass_version: str | None = None
    #: The run's clock by the workflow (ISO 8601): ``submitted_at``, ``finished_at`` (seen terminal), ``collected_at``.
    timings: dict[str, str] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state.phase == "succeeded" and self.error is None

    def progress(self) -> dict[str, Any]:
        """The data of this run's ``progress`` event."""
        return {
            "run_id": self.run_id,
            "datasets": self.datasets,
            "phase": self.state.phase,
            "ok": self.ok,
            "error": self.error,
            "scores": [m.model_dump(mode="json") for m in self.metrics],
        }


class PrepareInput(Model):
    request: dict[str, Any]  # raw: validating it is the activity's first step (a bad one ends ``rejected``)
    #: The workflow's start time (ISO 8601): the row's ``created_at``, the same on every retry of the activity.
    started_at: str
    #: See :attr:`WorkflowInput.attempt`; above 1, the earlier attempt is superseded first.
    attempt: int = 1


class Prepared(Model):
    """What ``prepare_evaluation`` decided: rejected (``rejected`` says why), reused (``reusable``), or run."""

    rejected: str | None = None
    validated: ValidatedRequest | None = None
    reusable: Reusable | None = None
    rendered: RenderedRuns | None = None
    #: Rendering failed (the row is ``running`` and ``started`` was published): the evaluation ends ``failed``.
    render_error: str | None = None


class ExtractInput(Model):
    eval_id: str
    run_id: str


class CheckInput(ExtractInput):
    """``check_run``: which run, by reference. Every poll's input stays in the workflow's history, so it carries no
    spec (the rendered config alone is kilobytes); the workflow re-submits a run the backend lost itself."""

    #: Inputs recorded by budeval before this model was the input hold the whole ``RunSpec``: its extra fields ignored.
    model_config = ConfigDict(extra="ignore")


class CollectInput(ExtractInput):
    datasets: list[str] = Field(default_factory=list)
    #: The run's final state as the backend reported it (goes into the ``progress`` event).
    state: RunState
    attempt: int = 1


class Extracted(Model):
    metrics: list[MetricRow]
    statuses: list[DatasetStatus]
    timestamp: str
    opencompass_version: str | None = None


class Stored(Model):
    metrics: int
    predictions: int


class Collected(Extracted):
    """``collect_run``: the run's scores and statuses (extract) and how many prediction rows were stored (store)."""

    predictions: int = 0
    #: The run's captured environment (``{work_dir}/.budeval/environment.json``; empty when it wrote none).
    environment: dict[str, Any] = Field(default_factory=dict)

    def outcome(self, where: CollectInput, timings: dict[str, str] | None = None) -> RunOutcome:
        """The collected run's outcome (its ``progress`` event, the evaluation's verdict and provenance)."""
        return RunOutcome(
            run_id=where.run_id,
            datasets=where.datasets,
            state=where.state,
            metrics=self.metrics,
            statuses=self.statuses,
            predictions=self.predictions,
            environment=self.environment,
            opencompass_version=self.opencompass_version,
            timings=dict(timings or {}),
        )


class ArchiveInput(Model):
    eval_id: str
    provenance: dict[str, Any]


class Archived(Model):
    url: str | None
    files: int = 0
    uploaded: int = 0
    skipped: int = 0
    error: str | None = None
    #: The archive stayed unreachable past the retry window (``error`` says how): archived later by the service.
    pending: bool = False


class FinishInput(Model):
    validated: ValidatedRequest
    outcome: EvalOutcome
    runs: list[RunOutcome]
    archive_url: str | None
    reason: str | None
    started_at: str
    finished_at: str
    config_hashes: dict[str, str] = Field(default_factory=dict)
    reused_from: str | None = None
    archive_pending: bool = False
    #: Why the archive is pending (the last transient error), kept in the row's provenance until it is archived.
    archive_pending_reason: str | None = None


class EvaluationResult(Model):
    """The workflow's output (also visible through ``GET /evals/{id}``)."""

    eval_id: str
    outcome: EvalOutcome
    reason: str | None = None
    reused_from: str | None = None
    archive_url: str | None = None
    failures: list[dict[str, Any]] = Field(default_factory=list)
    scores: list[dict[str, Any]] = Field(default_factory=list)
    #: Finished with what is stored while the archive stayed unreachable; the service archives it later.
    archive_pending: bool = False


class FinalizeInput(FinishInput):
    """``finalize_evaluation``: archive (unless ``archive`` is false), record, publish, clean up."""

    result: EvaluationResult
    archive: bool = True
    #: Unused (nothing sets or reads it). Kept only because finalize inputs already in workflow histories carry it
    #: and extra fields are forbidden: removing it would fail those workflows' finalize after an upgrade.
    event_extra: dict[str, Any] = Field(default_factory=dict)
    #: Until when (ISO 8601, UTC, the workflow's clock) an unreachable archive is retried; after it the evaluation
    #: finishes with what is stored and ``archive_pending`` (None: histories before it existed -- retry to the end).
    archive_deadline: str | None = None
    attempt: int = 1


class CancelInput(Model):
    """``stop_runs`` and ``cancel_evaluation``: which evaluation, its runs still going, and what the row needs."""

    eval_id: str
    #: Run ids whose child workflows are still going (``stop_runs`` raises the cancel into them).
    running: list[str] = Field(default_factory=list)
    #: None when the cancel came before ``prepare`` validated the request (the row is then a bare ``cancelled`` one).
    validated: ValidatedRequest | None = None
    runs: list[RunOutcome] = Field(default_factory=list)
    started_at: str
    finished_at: str
    attempt: int = 1


class EventInput(Model):
    eval_id: str
    kind: Literal[
        "started", "progress", "completed", "failed", "cancelled", "rejected",
        "gate.passed", "gate.failed", "gate.inconclusive",
    ]
    #: Deterministic event id: redelivery after a crash publishes the same id, so consumers can dedupe.
    event_id: str
    data: dict[str, Any]


class GateInput(Model):
    """The request's gate block for the evaluation that just finished (the candidate)."""

    eval_id: str
    spec: dict[str, Any]  # budeval.schemas.request.GateSpec as JSON


class CleanupInput(Model):
    eval_id: str
    run_ids: list[str]
