"""Prometheus metrics of the service, and thin wrappers that count what the workflow's dependencies do.

The workflow's activities know nothing about metrics: the service hands them a publisher, backend, store and parser
wrapped here, so every event published, run finished, extraction and row written is counted where it happens.
One registry per app (not the process-global one), so several apps can live in one process (tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from budeval.backends.base import JobBackend, RunFinishedCallback, RunSpec, RunState, Watch
from budeval.events.cloudevents import CloudEvent, kind_of
from budeval.events.publisher import EventPublisher
from budeval.schemas.results import ParsedRun, PredictionBatch
from budeval.workflow.activities import Parser

_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, float("inf"))
_EXTRACT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, float("inf"))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.evaluations = Counter(
            "budeval_evaluations", "Evaluations by status (accepted at intake, then their final status)", ["status"],
            registry=r,
        )
        self.rejects = Counter("budeval_rejected_requests", "Malformed requests rejected", ["source"], registry=r)
        self.events = Counter("budeval_events_published", "CloudEvents published", ["kind"], registry=r)
        self.event_failures = Counter("budeval_event_publish_failures", "Failed publish attempts", registry=r)
        self.run_duration = Histogram(
            "budeval_run_duration_seconds", "Run duration, submit to terminal phase", ["phase"],
            buckets=_DURATION_BUCKETS, registry=r,
        )
        self.extract_duration = Histogram(
            "budeval_extraction_duration_seconds", "Parsing one run's OpenCompass output", buckets=_EXTRACT_BUCKETS,
            registry=r,
        )
        self.rows = Counter("budeval_rows_written", "Rows written to the result store", ["table"], registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


#: Statuses that end an evaluation, as carried in the ``status`` field of ``completed``/``failed``/... events.
FINAL_STATUSES = frozenset({"completed", "partial", "reused", "failed", "cancelled", "rejected"})


class CountingPublisher:
    """Counts published events by kind and final evaluations by status."""

    def __init__(self, inner: EventPublisher, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def publish(self, topic: str, event: CloudEvent) -> None:
        try:
            self.inner.publish(topic, event)
        except Exception:
            self.metrics.event_failures.inc()
            raise
        kind = kind_of(event.model_dump())
        self.metrics.events.labels(kind=kind).inc()
        status = event.data.get("status") if isinstance(event.data, dict) else None
        if kind in {"completed", "failed", "cancelled", "rejected"} and status in FINAL_STATUSES:
            self.metrics.evaluations.labels(status=status).inc()

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


class TimedBackend:
    """Observes run durations (submit to terminal phase) seen through the watcher or a status check."""

    def __init__(self, inner: JobBackend, metrics: Metrics, progress: Any = None) -> None:
        self.inner = inner
        self.metrics = metrics
        #: The :class:`~budeval.service.progress.ProgressMonitor` told of every run submitted and state read.
        self.progress = progress
        self.name = inner.name
        self._started: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def _observe(self, state: RunState) -> None:
        if self.progress is not None:
            self.progress.seen(state)
        if not state.finished:
            return
        with self._lock:
            began = self._started.pop((state.eval_id, state.run_id), None)
        if began is not None:
            self.metrics.run_duration.labels(phase=state.phase).observe(time.monotonic() - began)

    def submit(self, spec: RunSpec) -> RunState:
        state = self.inner.submit(spec)
        with self._lock:
            self._started.setdefault((spec.eval_id, spec.run_id), time.monotonic())
        if self.progress is not None and not state.finished:
            self.progress.submitted(state, len(spec.datasets))
        self._observe(state)
        return state

    def get(self, eval_id: str, run_id: str) -> RunState:
        state = self.inner.get(eval_id, run_id)
        self._observe(state)
        return state

    def cancel(self, eval_id: str) -> None:
        self.inner.cancel(eval_id)

    def cleanup(self, eval_id: str, run_id: str) -> None:
        self.inner.cleanup(eval_id, run_id)

    def work_dir(self, eval_id: str, run_id: str) -> Path:
        return self.inner.work_dir(eval_id, run_id)

    def watch(self, on_finished: RunFinishedCallback) -> Watch:
        def observed(state: RunState) -> None:
            self._observe(state)
            on_finished(state)

        return self.inner.watch(observed)


class TimedRun:
    """A parsed run whose reading is timed: the parser is lazy (``parse_run`` opens the folder; the scores are read
    on first use, the predictions while the store consumes :meth:`prediction_batches`), so the time spent *inside
    the parser* -- the constructor, ``facts``/``metrics``/``statuses``, and every step of the prediction stream, but
    not the store's inserts between the steps -- is summed, and observed once, in seconds, when the prediction
    stream ends (``budeval_extraction_duration_seconds``). ``clock``: seconds, monotonic (tests hand in a fake)."""

    def __init__(self, inner: ParsedRun, observe: Callable[[float], None], spent: float,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._inner = inner
        self._observe = observe
        self._clock = clock
        self._lock = threading.Lock()
        self.spent = spent  # seconds so far
        self.observed = False

    def _timed(self, read: Callable[[], Any]) -> Any:
        began = self._clock()
        try:
            return read()
        finally:
            with self._lock:
                self.spent += self._clock() - began

    @property
    def facts(self) -> Any:
        return self._timed(lambda: self._inner.facts)

    @property
    def metrics(self) -> Any:
        return self._timed(lambda: self._inner.metrics)

    @property
    def statuses(self) -> Any:
        return self._timed(lambda: self._inner.statuses)

    def prediction_batches(self, batch_size: int = 50_000) -> Iterator[PredictionBatch]:
        stream = self._timed(lambda: self._inner.prediction_batches(batch_size))
        while True:
            batch = self._timed(lambda: next(stream, None))
            if batch is None:
                break
            yield batch
        with self._lock:
            first, self.observed = not self.observed, True
        if first:  # a second pass (a retried store) reads again but is the same extraction
            self._observe(self.spent)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def timed_parser(parse: Parser, metrics: Metrics, clock: Callable[[], float] = time.perf_counter) -> Parser:
    """``parse`` whose runs observe their whole extraction (:class:`TimedRun`) in ``budeval_extraction_duration_
    seconds``."""

    def parse_timed(work_dir: Path) -> ParsedRun:
        began = clock()
        inner = parse(work_dir)
        return TimedRun(inner, metrics.extract_duration.observe, clock() - began, clock)

    return parse_timed


class CountingStore:
    """Counts the rows written; everything else is forwarded (the store's extra queries -- leaderboard, compare,
    flips, ping -- stay reachable). No lock here: the store serialises its own client and batches concurrent small
    writes (group commit), which a lock around every call would defeat."""

    def __init__(self, inner: Any, metrics: Metrics | None = None) -> None:
        self._inner = inner
        self._metrics = metrics

    def store_run(self, eval_id: str, run_id: str, parsed: ParsedRun) -> Any:
        report = self._inner.store_run(eval_id, run_id, parsed)
        if self._metrics is not None:
            self._metrics.rows.labels(table="scores").inc(report.metrics)
            self._metrics.rows.labels(table="predictions").inc(report.predictions)
        return report

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
