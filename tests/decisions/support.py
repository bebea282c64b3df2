"""Evaluations written through the store's write API: real OpenCompass fixtures through the real reader, and planted
runs of known size (a ParsedRun in memory: the parser's contract as pure data) for the statistics' power."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from budeval.engine.results import parse_run
from budeval.errors import GateRefusedError
from budeval.schemas.results import DatasetStatus, MetricRow, PredictionBatch, RunFacts
from budeval.storage.base import EvaluationRecord
from budeval.storage.clickhouse import ClickHouseStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OPENCOMPASS = FIXTURES / "opencompass"
REALWORLD = FIXTURES / "realworld"

#: (dataset, example_index, replica, correct, score)
Row = tuple[str, int, int, bool | None, float | None]


@dataclass
class PlantedRun:
    """Implements ``budeval.schemas.results.ParsedRun`` for one model over the given rows."""

    rows: list[Row]
    model: str = "m"
    timestamp: str = "20260101_000000"
    extra_metrics: list[MetricRow] = field(default_factory=list)
    prompt_tag: str = ""  # appended to every prompt (prompts that differ between checkpoints)

    def _datasets(self) -> list[str]:
        return sorted({r[0] for r in self.rows})

    @property
    def facts(self) -> RunFacts:
        return RunFacts(timestamp=self.timestamp, summary_file=None, models=[self.model], datasets=self._datasets(),
                        config_file=None, opencompass_version="0.5.4")

    @property
    def metrics(self) -> list[MetricRow]:
        out = []
        for d in self._datasets():
            verdicts = [r[3] for r in self.rows if r[0] == d and r[3] is not None]
            score = 100.0 * sum(verdicts) / len(verdicts) if verdicts else None
            out.append(MetricRow(model=self.model, dataset=d, metric="accuracy", score=score, version="v1", mode="gen"))
        return out + self.extra_metrics

    @property
    def statuses(self) -> list[DatasetStatus]:
        return [DatasetStatus(model=self.model, dataset=d, status="ok") for d in self._datasets()]

    def prediction_batches(self, batch_size: int = 50_000) -> Iterator[PredictionBatch]:
        for start in range(0, len(self.rows), batch_size):
            batch = PredictionBatch()
            for dataset, index, replica, correct, score in self.rows[start : start + batch_size]:
                batch.model.append(self.model)
                batch.dataset.append(dataset)
                batch.example_index.append(index)
                batch.prompt.append(f"USER: question {index} of {dataset}{self.prompt_tag}")
                batch.prediction.append(f"answer {index}")
                batch.gold.append(f"gold {index}")
                batch.correct.append(correct)
                batch.replica.append(replica)
                batch.score.append(score)
            yield batch


def verdicts(dataset: str, flags: Sequence[bool]) -> list[Row]:
    return [(dataset, i, 0, ok, None) for i, ok in enumerate(flags)]


def planted(n: int, right: int, losses: int = 0, gains: int = 0) -> tuple[list[bool], list[bool]]:
    """Baseline right on the first ``right`` of ``n`` examples; the candidate loses ``losses`` of those and gains
    ``gains`` of the rest: the true delta is ``(gains - losses) / n``."""
    base = [i < right for i in range(n)]
    cand = list(base)
    for i in range(losses):
        cand[i] = False
    for i in range(right, right + gains):
        cand[i] = True
    return base, cand


_CLOCK = datetime(2026, 1, 1, tzinfo=UTC)


def record(store: ClickHouseStore, eval_id: str, run: object, *, experiment: str | None = None,
           labels: dict[str, str] | None = None, order: int = 0, model: str = "m",
           checkpoint: tuple[str, int, int | None] | None = None) -> None:
    """Store one run under ``eval_id`` (the store's write API) with its evaluation row; ``checkpoint``: (series,
    step, tokens seen), the columns of a request's checkpoint block."""
    store.store_run(eval_id, "r0", run)  # type: ignore[arg-type]
    series, step, tokens = checkpoint or ("", None, None)
    store.record_evaluation(EvaluationRecord(
        eval_id=eval_id, status="completed", model_name=model, experiment_id=experiment, labels=labels or {},
        checkpoint_series=series, checkpoint_step=step, checkpoint_tokens=tokens,
        created_at=_CLOCK + timedelta(hours=order), finished_at=_CLOCK + timedelta(hours=order, minutes=5)))


def record_fixture(store: ClickHouseStore, eval_id: str, folder: Path, **kwargs: object) -> None:
    """A real OpenCompass work dir through the real reader into the store."""
    record(store, eval_id, parse_run(folder), **kwargs)  # type: ignore[arg-type]


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return fn().model_dump()
    except GateRefusedError as exc:
        return ("refused", str(exc), exc.overlap)


def both_ways(store: ClickHouseStore, fn: Callable[[], Any]) -> Any:
    """``fn``'s result from the sets and from the rows, asserted equal."""
    store.decisions_from_sets = True
    from_sets = _outcome(fn)
    store.decisions_from_sets = False
    try:
        from_rows = _outcome(fn)
    finally:
        store.decisions_from_sets = True
    assert from_sets == from_rows
    return from_sets
