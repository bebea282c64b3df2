"""Row layouts of the ClickHouse tables (budeval/storage/migrations.py) and the helpers that build them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from budeval.schemas.results import DatasetStatus, MetricRow, PredictionBatch, RunUsage

PREDICTION_COLUMNS = [
    "eval_id",
    "run_id",
    "model",
    "dataset",
    "example_index",
    "replica",
    "prompt",
    "prediction",
    "gold",
    "correct",
    "score",
    "judge_answer",
]
SCORE_COLUMNS = (
    "eval_id",
    "run_id",
    "model",
    "dataset",
    "metric",
    "score",
    "version",
    "mode",
    "status",
    "run_at",
    "reason",
    "judge",
)
STATUS_COLUMNS = ("eval_id", "run_id", "model", "dataset", "status", "reason", "run_at")
USAGE_FIELDS = ("requests", "failed_requests", "prompt_tokens", "completion_tokens", "total_tokens")
USAGE_COLUMNS = ("eval_id", "run_id", *USAGE_FIELDS, "run_at")
#: The columns of an evaluation row that EvaluationRecord carries (read and written).
EVALUATION_FIELDS = (
    "eval_id",
    "experiment_id",
    "status",
    "params_hash",
    "model_name",
    "model_source",
    "model_revision",
    "datasets",
    "reused_from",
    "reason",
    "archive_url",
    "created_at",
    "finished_at",
    "provenance",
    "labels",
    "model_commit",
    "engine_version",
    "gpu_type",
    "gpu_count",
    "archive_pending",
    "checkpoint_series",
    "checkpoint_step",
    "checkpoint_tokens",
    "judge",
    "rejudge_of",
)
EVALUATION_COLUMNS = (*EVALUATION_FIELDS, "updated_at", "row_version")
#: The tables holding rows of one (eval, run); ``example_sets`` (the prediction rows' bitmaps, migration 7) is deleted
#: with ``predictions``, so that the bitmaps always say what the rows say.
_RUN_TABLES = ("predictions", "example_sets", "scores", "dataset_status", "run_usage")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_version_lock = threading.Lock()
_last_version = 0


def _next_row_version() -> int:
    """Strictly increasing within the process, wall-clock based across processes: the latest write wins."""
    global _last_version
    with _version_lock:
        _last_version = max(time.time_ns(), _last_version + 1)
        return _last_version


def _release(context: Any) -> None:
    """Drop an insert context's reference to the last batch (``data = None`` leaves the column lists in place)."""
    if context is not None:
        context.data = [[]]  # zero rows: the public setter replaces the held columns with an empty one


def run_time(timestamp: str) -> datetime:
    """OpenCompass's timestamp folder name (``20261123_081443``) as UTC; unknown formats sort first."""
    try:
        return datetime.strptime(timestamp, "%Y%m%d_%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return _EPOCH


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class _RunRows:
    """One run's rows on their way into the store (predictions only when they fit one batch)."""

    eval_id: str
    run_id: str
    run_at: datetime
    metrics: list[MetricRow]
    statuses: list[DatasetStatus]
    predictions: PredictionBatch | None = None
    usage: RunUsage | None = None


@dataclass
class _EvaluationRow:
    values: list[Any]  # EVALUATION_COLUMNS


def _prediction_columns(eval_id: str, run_id: str, block: PredictionBatch) -> list[list[Any]]:
    """PREDICTION_COLUMNS of one batch; the constant key columns are ``[value] * n`` (C speed, no per-row Python)."""
    n = len(block)
    return [
        [eval_id] * n,
        [run_id] * n,
        block.model,
        block.dataset,
        block.example_index,
        block.replica if len(block.replica) == n else [0] * n,
        block.prompt,
        block.prediction,
        block.gold,
        block.correct,
        block.score if len(block.score) == n else [None] * n,
        block.judge_answer if len(block.judge_answer) == n else [""] * n,
    ]


def _score_rows(run: _RunRows) -> list[tuple[Any, ...]]:
    """SCORE_COLUMNS rows: one per metric, plus one without a metric for a (model, dataset) that is not ``ok`` and has
    no metric at all, so its failure shows in results. ``reason``: the metric's own (NaN, not a number) or, for a
    dataset that is not ``ok``, the dataset's."""
    status_of = {(s.model, s.dataset): s for s in run.statuses}
    head = (run.eval_id, run.run_id)
    rows: list[tuple[Any, ...]] = []
    for m in run.metrics:
        status = status_of.get((m.model, m.dataset))
        name = status.status if status is not None else ("ok" if m.score is not None else "missing")
        if m.score is None and m.reason:  # this metric's own value is unusable (NaN, text): failed whatever the rest
            name = "failed"
        reason = m.reason or (status.reason if status is not None and name != "ok" else None)
        rows.append(
            (*head, m.model, m.dataset, m.metric, m.score, m.version, m.mode, name, run.run_at, reason, m.judge or "")
        )
    scored = {(m.model, m.dataset) for m in run.metrics}
    rows += [
        (*head, s.model, s.dataset, "", None, "", "", s.status, run.run_at, s.reason, "")
        for s in run.statuses
        if (s.model, s.dataset) not in scored and s.status != "ok"
    ]
    return rows
