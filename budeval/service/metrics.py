"""Prometheus metrics of the service, and thin wrappers that count what the workflow's dependencies do.

The workflow's activities know nothing about metrics: the service hands them a publisher, backend, store and parser
wrapped here, so every event published, run finished, extraction and row written is counted where it happens.
One registry per app (not the process-global one), so several apps can live in one process (tests).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from budeval.backends.base import JobBackend, RunFinishedCallback, RunSpec, RunState, Watch
from budeval.events.cloudevents import CloudEvent, kind_of
from budeval.events.publisher import EventPublisher
from budeval.schemas.results import ParsedRun
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

    def __init__(self, inner: JobBackend, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.name = inner.name
        self._started: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def _observe(self, state: RunState) -> None:
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


def timed_parser(parse: Parser, metrics: Metrics) -> Parser:
    def parse_timed(work_dir: Path) -> ParsedRun:
        with metrics.extract_duration.time():
            return parse(work_dir)

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
