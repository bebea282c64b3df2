"""``budeval_extraction_duration_seconds`` measures the extraction (the reader's whole work on a run folder), not
the lazy constructor of the parsed run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from budeval.engine.results import parse_run
from budeval.service.metrics import Metrics, TimedRun, timed_parser
from budeval.workflow import steps

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "opencompass"


def _histogram(metrics: Metrics) -> tuple[float, float, dict[str, float]]:
    """(count, sum, cumulative bucket counts by upper bound) of the extraction histogram."""
    count = total = 0.0
    buckets: dict[str, float] = {}
    for family in metrics.registry.collect():
        if family.name != "budeval_extraction_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_bucket"):
                buckets[sample.labels["le"]] = sample.value
    return count, total, buckets


def test_a_real_extraction_is_observed_once_with_a_nonzero_duration(store: Any) -> None:
    metrics = Metrics()
    parse = timed_parser(parse_run, metrics)
    began = time.perf_counter()
    parsed = steps.extract_run(parse, FIXTURES / "qa_chat")
    assert _histogram(metrics)[0] == 0  # not yet: the predictions are read while the store consumes them
    stored = steps.store_run(store, "ex-metric", "r0", parsed)
    wall = time.perf_counter() - began
    assert stored.predictions == 5
    count, total, buckets = _histogram(metrics)
    assert count == 1
    assert 0 < total <= wall  # the reader's share of the whole extraction, never more than the wall time
    assert buckets["+Inf"] == 1 and sum(1 for v in buckets.values() if v == 1) >= 1
    steps.store_run(store, "ex-metric", "r0", parsed)  # a retried store reads again: the same extraction
    assert _histogram(metrics)[0] == 1


class _Clock:
    """A fake clock that advances by one second per reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


class _Run:
    facts = "facts"
    metrics: list[str] = []
    statuses: list[str] = []

    def prediction_batches(self, batch_size: int = 50_000) -> Iterator[str]:
        yield from ("b1", "b2")


def test_time_inside_the_prediction_stream_counts_and_the_consumers_time_does_not() -> None:
    seen: list[float] = []
    clock = _Clock()
    run = TimedRun(_Run(), seen.append, spent=1.0, clock=clock)  # type: ignore[arg-type]
    assert run.metrics == [] and run.facts == "facts"  # 2 s
    for _ in run.prediction_batches():
        clock.now += 100  # the store's insert between two batches: not the reader's time
    # 1 (constructor) + 2 (facts, metrics) + 1 (opening the stream) + 3 steps (two batches and the end)
    assert seen == [7.0]
