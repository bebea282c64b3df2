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
    """One score of a (model, dataset, metric), on OpenCompass's 0-100 scale (as OpenCompass reports it).

    ``score`` is None for a ``-`` cell or a value that is not a finite number (then ``reason`` says which: NaN,
    infinite, not a number). ``source``: ``results`` (``results/{model}/{dataset}.json``, full precision) or the
    summary file it came from (groups, averages, subjective and NeedleBench tables). ``judge``: the judge model of
    an LLM-judged score, from the summary's or results folder's ``judged-by--{judge}`` name.
    """

    model: str
    dataset: str
    metric: str
    score: float | None
    version: str
    mode: str
    reason: str | None = None
    judge: str | None = None
    source: str = ""


class DatasetStatus(Frozen):
    """Outcome of one (model, dataset): ``ok`` (scored), ``missing`` (a ``-`` cell, no error seen), ``failed``
    (an ``error`` in its results file, error lines in ``logs/``, no results, no finite score, or outputs outside the
    run folder), ``partial`` (some metrics not finite or missing); ``reason`` says why for anything but ``ok``."""

    model: str
    dataset: str
    status: DatasetStatusName
    reason: str | None = None


class RunUsage(Frozen):
    """What one run asked of an endpoint model: requests sent (each after the OpenAI client's own retries) and the
    ones that failed, and the tokens the endpoint reported (None: it reported none). Source: the run's usage lines
    (budeval/engine/opencompass_plugin/budeval_usage.py), summed by budeval/engine/results/usage.py."""

    requests: int = 0
    failed_requests: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

    def line(self) -> str:
        """One readable line: ``usage: 9 requests (0 failed), tokens: prompt 310, completion 96, total 406``."""
        def shown(value: int | None) -> str:
            return "-" if value is None else str(value)

        return (f"usage: {self.requests} requests ({self.failed_requests} failed), tokens: prompt "
                f"{shown(self.prompt_tokens)}, completion {shown(self.completion_tokens)}, "
                f"total {shown(self.total_tokens)}")

    @staticmethod
    def total(runs: list[RunUsage]) -> RunUsage | None:
        """The sum over runs (a token count stays None only when no run reported it); None for no runs."""
        if not runs:
            return None

        def tokens(name: str) -> int | None:
            values = [getattr(r, name) for r in runs if getattr(r, name) is not None]
            return sum(values) if values else None

        return RunUsage(
            requests=sum(r.requests for r in runs),
            failed_requests=sum(r.failed_requests for r in runs),
            prompt_tokens=tokens("prompt_tokens"),
            completion_tokens=tokens("completion_tokens"),
            total_tokens=tokens("total_tokens"),
        )


class RunFacts(Frozen):
    """What one OpenCompass timestamp folder says about itself; paths are relative to the work dir.

    ``summary_file``: the summary the scores were read with (None when the run wrote none: scores then come from its
    results files alone); ``summary_files``: every summary file read; ``notes``: what could not be read and was
    worked around (an unreadable summary, a bad cell), so that a degraded read is visible; ``judges``: judge models.
    """

    timestamp: str
    summary_file: str | None
    models: list[str]
    datasets: list[str]
    config_file: str | None
    opencompass_version: str | None
    summary_files: list[str] = []
    notes: list[str] = []
    judges: list[str] = []
    #: An endpoint model's requests and tokens (None: the run recorded none, e.g. a Hugging Face model).
    usage: RunUsage | None = None


@dataclass(slots=True)
class PredictionBatch:
    """Column-oriented prediction rows; all lists have the same length. ``correct`` is None where unknown.

    An example's identity is (model, dataset, example_index, replica)."""

    model: list[str] = field(default_factory=list)
    dataset: list[str] = field(default_factory=list)
    example_index: list[int] = field(default_factory=list)
    prompt: list[str] = field(default_factory=list)
    prediction: list[str] = field(default_factory=list)
    gold: list[str] = field(default_factory=list)
    correct: list[bool | None] = field(default_factory=list)
    #: 0 unless the dataset ran ``n > 1`` replicas (samples) per example: then one row per (example, replica).
    #: A producer without replicas may leave it empty: the store then writes 0s.
    replica: list[int] = field(default_factory=list)
    #: The evaluator's numeric per-example score where it gives one (e.g. ``details[i].score``), else None
    #: (may be left empty: the store then writes NULLs).
    score: list[float | None] = field(default_factory=list)
    #: A judge's raw answer per row (datasets scored by a judge model), else empty: the store then writes ''.
    judge_answer: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.example_index)


class ParsedRun(Protocol):
    """The parser's result for one run folder: small parts in memory, predictions streamed on demand."""

    @property
    def facts(self) -> RunFacts: ...

    @property
    def metrics(self) -> list[MetricRow]: ...

    @property
    def statuses(self) -> list[DatasetStatus]:
        """Per (model, dataset); read again after ``prediction_batches``: a dataset whose predictions file could not
        be read is then not ``ok`` (the rest of the run is read as usual)."""
        ...

    def prediction_batches(self, batch_size: int = 50_000) -> Iterator[PredictionBatch]:
        """Stream every prediction row; may be called more than once (each call re-reads the files)."""
        ...
