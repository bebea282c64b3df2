"""Interfaces of the result store (ClickHouse server or chDB) and the archive (S3 or a local folder).

The workflow's activities depend on these protocols only; ``budeval.storage.factory`` picks the implementation
from a DSN / URL so that the embedded default and a cluster differ in configuration only.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from budeval.schemas.results import ParsedRun, RunUsage
from budeval.storage.archive_verify import ArchiveCheck

EvalStatus = Literal["pending", "running", "completed", "partial", "failed", "cancelled", "rejected", "reused"]


class EvaluationRecord(BaseModel):
    """One row per evaluation: status, model identity, timings and provenance."""

    model_config = ConfigDict(extra="forbid")

    eval_id: str
    experiment_id: str | None = None
    status: EvalStatus
    params_hash: str = ""
    model_name: str = ""
    model_source: str = ""  # hub id / path / endpoint URL (never a key)
    model_revision: str = ""
    #: The model's pinned identity: a hub commit sha, or ``sha256:...`` of a local folder's files ("" if unresolved).
    model_commit: str = ""
    #: OpenCompass version that ran (the configured one until a run reports its own).
    engine_version: str = ""
    #: GPU model(s) and count the runs reported ("" / 0 on CPU or before any run).
    gpu_type: str = ""
    gpu_count: int = 0
    datasets: list[str] = Field(default_factory=list)
    reused_from: str | None = None
    reason: str | None = None
    archive_url: str | None = None
    #: The evaluation finished while the archive stayed unreachable: its raw files wait on the results volume until
    #: the service's archive retry loop uploads them and clears the flag (``provenance.archive_pending_reason``: why).
    archive_pending: bool = False
    #: The request's ``checkpoint`` block: the series ("" when none), the training step and tokens seen.
    checkpoint_series: str = ""
    checkpoint_step: int | None = None
    checkpoint_tokens: int | None = None
    #: The judge model of the datasets scored ``judge`` (budeval/engine/judging.py ``judge_label``: name, pinned
    #: commit or endpoint, template hash); "" when none.
    judge: str = ""
    #: The evaluation whose stored predictions this one judged again (``budeval rejudge``), else None.
    rejudge_of: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    #: Provenance: engine version, image, config hash, dataset versions, generation settings, budeval version, ...
    provenance: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class StoreReport(BaseModel):
    metrics: int
    predictions: int


class ScoreRow(BaseModel):
    """One stored score; ``reason`` says why ``score`` is missing or the dataset is not ``ok``; ``judge``: the judge
    model of an LLM-judged score."""

    eval_id: str
    run_id: str
    model: str
    dataset: str
    metric: str
    score: float | None
    status: str
    version: str = ""
    mode: str = ""
    reason: str | None = None
    judge: str | None = None


class ResultStore(Protocol):
    """Safe to call from many threads at once: the workflow's activities run concurrently, and the ClickHouse store
    batches their small writes (group commit), which needs them to arrive concurrently rather than behind a lock."""

    def migrate(self) -> list[str]:
        """Apply pending migrations; return the ids applied (empty when up to date)."""
        ...

    def record_evaluation(self, record: EvaluationRecord) -> None:
        """Insert or replace the evaluation row (latest write wins)."""
        ...

    def get_evaluation(self, eval_id: str) -> EvaluationRecord | None: ...

    def find_reusable(self, params_hash: str) -> EvaluationRecord | None:
        """The newest ``completed`` evaluation with these params, if any."""
        ...

    def store_run(self, eval_id: str, run_id: str, parsed: ParsedRun) -> StoreReport:
        """Write metric, status and prediction rows of one run; storing the same run twice yields the same rows."""
        ...

    def copy_results(self, source_eval: str, target_eval: str, model: str | None = None) -> int:
        """Copy ``source_eval``'s score, dataset-status and prediction rows to ``target_eval`` (a reused evaluation),
        replacing any earlier copy; ``model`` renames the rows' model (the reusing request's name). Returns score rows
        copied."""
        ...

    def clear_results(self, eval_id: str) -> None:
        """Delete every score, dataset-status and prediction row of ``eval_id`` (a re-run supersedes them)."""
        ...

    def evaluations_to_tend(self, limit: int = 100) -> list[EvaluationRecord]:
        """Rows still ``pending``/``running`` or with ``archive_pending`` (the service's housekeeping), oldest first."""
        ...

    def results(self, eval_id: str) -> list[ScoreRow]: ...

    def usage(self, eval_id: str) -> dict[str, RunUsage]:
        """run id -> an endpoint model's requests and tokens in that run (runs that recorded none are absent)."""
        ...

    def close(self) -> None: ...


class ArchiveReceipt(BaseModel):
    url: str  # e.g. s3://bucket/eval/run/ or file:///path/eval/run/
    files: int
    bytes: int
    uploaded: int
    skipped: int  # identical objects already present


class Archive(Protocol):
    def upload_run(self, source: Path, prefix: str, provenance: dict[str, Any]) -> ArchiveReceipt:
        """Copy the whole folder under ``prefix`` plus ``manifest.json``; idempotent; never modifies ``source``."""
        ...

    def verify_run(self, source: Path, prefix: str) -> ArchiveCheck:
        """Whether the archive under ``prefix`` holds every file of ``source`` with the manifest's sha256, read back
        (budeval/storage/archive_verify.py); retention removes a folder only on ``ok``."""
        ...
