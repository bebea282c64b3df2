"""Typed records the OpenCompass result reader produces and the stores consume.

Predictions are handed over in column-oriented batches (:class:`PredictionBatch`) so that a run with millions of
examples streams through parse -> insert with bounded memory and no per-row object overhead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

DatasetStatusName = Literal["ok", "missing", "failed", "partial"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MetricRow(Frozen):
    """One score from the newest summary CSV; ``score`` is on OpenCompass's 0-100 scale, None for a ``-`` cell."""

    model: str
    dataset: str
    metric: str
    score: float | None
    version: str
    mode: str


class DatasetStatus(Frozen):
    """Outcome of one (model, dataset): ``ok`` (scored), ``missing`` (a ``-`` cell, no error seen), ``failed``
    (error lines in ``logs/`` or no results), ``partial`` (some metrics or examples missing)."""

    model: str
    dataset: str
    status: DatasetStatusName
    reason: str | None = None


class RunFacts(Frozen):
    """What one OpenCompass timestamp folder says about itself."""

    timestamp: str
    summary_file: str  # relative to the run folder
    models: list[str]
    datasets: list[str]
    config_file: str | None
    opencompass_version: str | None


@dataclass(slots=True)
class PredictionBatch:
    """Column-oriented prediction rows; all lists have the same length. ``correct`` is None where unknown."""

    model: list[str] = field(default_factory=list)
    dataset: list[str] = field(default_factory=list)
    example_index: list[int] = field(default_factory=list)
    prompt: list[str] = field(default_factory=list)
    prediction: list[str] = field(default_factory=list)
    gold: list[str] = field(default_factory=list)
    correct: list[bool | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.example_index)


class ParsedRun(Protocol):
    """The parser's result for one run folder: small parts in memory, predictions streamed on demand."""

    @property
    def facts(self) -> RunFacts: ...

    @property
    def metrics(self) -> list[MetricRow]: ...

    @property
    def statuses(self) -> list[DatasetStatus]: ...

    def prediction_batches(self, batch_size: int = 50_000) -> Iterator[PredictionBatch]:
        """Stream every prediction row; may be called more than once (each call re-reads the files)."""
        ...
