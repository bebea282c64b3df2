"""An in-memory ParsedRun for store tests: the parser's contract without files (pure data, no behaviour to mock)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from budeval.schemas.results import DatasetStatus, MetricRow, PredictionBatch, RunFacts


@dataclass
class Example:
    model: str
    dataset: str
    index: int
    correct: bool | None
    prediction: str = ""
    gold: str = ""
    prompt: str = ""
    judge_answer: str = ""


@dataclass
class MemoryRun:
    """Implements ``budeval.schemas.results.ParsedRun``; ``batches_served`` counts prediction_batches() calls."""

    timestamp: str
    metric_rows: list[MetricRow]
    status_rows: list[DatasetStatus]
    examples: list[Example] = field(default_factory=list)
    batches_served: int = 0

    @property
    def facts(self) -> RunFacts:
        return RunFacts(
            timestamp=self.timestamp,
            summary_file=f"{self.timestamp}/summary/summary_{self.timestamp}.csv",
            models=sorted({m.model for m in self.metric_rows}),
            datasets=sorted({m.dataset for m in self.metric_rows}),
            config_file=None,
            opencompass_version="0.5.4",
        )

    @property
    def metrics(self) -> list[MetricRow]:
        return list(self.metric_rows)

    @property
    def statuses(self) -> list[DatasetStatus]:
        return list(self.status_rows)

    def prediction_batches(self, batch_size: int = 50_000) -> Iterator[PredictionBatch]:
        self.batches_served += 1
        for start in range(0, len(self.examples), batch_size):
            batch = PredictionBatch()
            for ex in self.examples[start : start + batch_size]:
                batch.model.append(ex.model)
                batch.dataset.append(ex.dataset)
                batch.example_index.append(ex.index)
                batch.prompt.append(ex.prompt or f"question {ex.index}")
                batch.prediction.append(ex.prediction or f"answer {ex.index}")
                batch.gold.append(ex.gold or f"gold {ex.index}")
                batch.correct.append(ex.correct)
                batch.judge_answer.append(ex.judge_answer)
            yield batch


def metric(model: str, dataset: str, score: float | None, name: str = "accuracy") -> MetricRow:
    return MetricRow(model=model, dataset=dataset, metric=name, score=score, version="abc123", mode="gen")


def status(model: str, dataset: str, value: str = "ok") -> DatasetStatus:
    return DatasetStatus(model=model, dataset=dataset, status=value)  # type: ignore[arg-type]


def simple_run(
    timestamp: str,
    scores: Mapping[tuple[str, str], float | None],
    correct: Mapping[tuple[str, str], list[bool]] | None = None,
) -> MemoryRun:
    """One metric per (model, dataset); status ok when scored, missing when None; examples from ``correct``."""
    examples = [
        Example(model=m, dataset=d, index=i, correct=c)
        for (m, d), flags in (correct or {}).items()
        for i, c in enumerate(flags)
    ]
    return MemoryRun(
        timestamp=timestamp,
        metric_rows=[metric(m, d, s) for (m, d), s in scores.items()],
        status_rows=[status(m, d, "ok" if s is not None else "missing") for (m, d), s in scores.items()],
        examples=examples,
    )
