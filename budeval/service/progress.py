"""Live progress of running evaluations: read from the runs' OpenCompass files, published as ``progress`` events.

The service reads what OpenCompass writes in each run's work dir (``{results_root}/{eval_id}/{run_id}``: a local
process's folder, or the shared results volume a Kubernetes Job writes to) with
:class:`~budeval.engine.results.progress.ProgressReader` -- so it works the same for both backends and needs nothing
from the runner. Every ``progress_interval_s`` the :class:`ProgressMonitor` reads the runs this service has seen
start (the backend wrapper tells it: a submit, or a status check of a run still going after a restart) and publishes
a ``progress`` event for each whose progress changed. ``GET /evals/{id}`` reads the same on demand
(:func:`evaluation_progress`).

Why not in the workflow: progress is read from files many times per run; as activities each read would be a step in
the workflow's history. Live events are informational (the run's own ``progress`` event at its end and the final
event stay the workflow's); losing one (the broker away) loses nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from budeval.backends.base import JobBackend, RunState
from budeval.engine.results.progress import ProgressReader, RunProgress
from budeval.errors import BudevalError
from budeval.events.cloudevents import make_event
from budeval.events.publisher import EventPublisher
from budeval.logs import get_logger
from budeval.schemas.ids import DNS_LABEL
from budeval.service.periodic import Periodic
from budeval.workflow import names

_LOG = get_logger(component="progress")


def run_folders(backend: JobBackend, eval_id: str) -> list[tuple[str, Path]]:
    """(run id, work dir) of every run folder of an evaluation on this process's view of the results volume."""
    try:
        root = backend.work_dir(eval_id, "r0").parent
        entries = sorted(p for p in root.iterdir() if p.is_dir() and DNS_LABEL.fullmatch(p.name))
    except (OSError, BudevalError):  # no folder yet, an id the backend refuses
        return []
    return [(p.name, p) for p in entries]


def combined(runs: list[RunProgress]) -> dict[str, Any]:
    """An evaluation's progress over its runs: ``done``, ``total`` (None while any is unknown), ``eta_s`` (the
    longest run's: runs go in parallel; None while any is unknown) and the ``runs``."""
    totals = [r.total for r in runs]
    etas = [r.eta_s for r in runs]
    return {
        "done": sum(r.done for r in runs),
        "total": None if not runs or None in totals else sum(t for t in totals if t is not None),
        "eta_s": None if not runs or None in etas else max(e for e in etas if e is not None),
        "runs": [r.as_dict() for r in runs],
    }


def evaluation_progress(reader: ProgressReader, backend: JobBackend, eval_id: str,
                        planned: dict[str, int] | None = None) -> dict[str, Any]:
    """Progress of every run folder of ``eval_id`` (see :func:`combined`); ``planned``: datasets per run id."""
    planned = planned or {}
    return combined([reader.run(run_id, folder, planned.get(run_id, 0)) for run_id, folder in
                     run_folders(backend, eval_id)])


def _signature(progress: RunProgress) -> tuple[Any, ...]:
    return (progress.stamp, progress.done, progress.total, tuple((t.dataset, t.stage, t.done) for t in progress.tasks))


class ProgressMonitor(Periodic):
    """Tracks runs seen running and publishes their changed progress; :meth:`start` runs rounds in a daemon thread
    every ``interval_s`` until :meth:`stop` (0: no thread; :meth:`run_once` still works)."""

    def __init__(self, backend: JobBackend, publisher: EventPublisher, topic: str, interval_s: float,
                 reader: ProgressReader | None = None) -> None:
        self.backend = backend
        self.publisher = publisher
        self.topic = topic
        self.interval_s = interval_s
        self.reader = reader or ProgressReader()
        self._runs: dict[tuple[str, str], int] = {}  # (eval id, run id) -> datasets planned (0: unknown)
        self._published: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._lock = threading.Lock()
        super().__init__()

    # -- what the backend wrapper tells it ----------------------------------------------------------------------
    def submitted(self, state: RunState, datasets: int) -> None:
        """A run was submitted (or adopted) with ``datasets`` datasets."""
        with self._lock:
            self._runs[(state.eval_id, state.run_id)] = datasets
        self.seen(state)

    def seen(self, state: RunState) -> None:
        """A run's state was read: a finished run is no longer tracked, one still going is (again, after a
        restart)."""
        key = (state.eval_id, state.run_id)
        with self._lock:
            if state.finished:
                self._runs.pop(key, None)
                self._published.pop(key, None)
            elif state.phase in ("pending", "running"):
                self._runs.setdefault(key, 0)

    def planned(self, eval_id: str) -> dict[str, int]:
        """Datasets planned per run id of ``eval_id``, for the runs tracked."""
        with self._lock:
            return {run: n for (ev, run), n in self._runs.items() if ev == eval_id}

    # -- rounds ---------------------------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Read every tracked run; publish a ``progress`` event for each whose progress changed. Returns how many
        were published."""
        with self._lock:
            runs = dict(self._runs)
        published = 0
        for (eval_id, run_id), planned in sorted(runs.items()):
            try:
                progress = self.reader.run(run_id, self.backend.work_dir(eval_id, run_id), planned)
            except Exception as exc:  # an unreadable folder: next round
                _LOG.warning("progress not read", eval_id=eval_id, run_id=run_id, error=type(exc).__name__)
                continue
            signature = _signature(progress)
            with self._lock:
                if (eval_id, run_id) not in self._runs or self._published.get((eval_id, run_id)) == signature:
                    continue
            if not progress.tasks:
                continue  # nothing started yet: the ``started`` event said as much
            if self._publish(eval_id, progress):
                published += 1
                with self._lock:
                    if (eval_id, run_id) in self._runs:
                        self._published[(eval_id, run_id)] = signature
        return published

    def _publish(self, eval_id: str, progress: RunProgress) -> bool:
        # Deterministic per state (consumers dedupe on id); the OpenCompass run folder's stamp tells attempts apart.
        base = names.event_id(eval_id, "progress", 1, progress.run_id)
        evaluated = sum(t.stage == "evaluated" for t in progress.tasks)
        event_id = f"{base}.live.{progress.stamp}.{progress.done}.{evaluated}"
        data = {
            "status": "running",
            "run_id": progress.run_id,
            "phase": "running",
            "live": True,
            "done": progress.done,
            "total": progress.total,
            "eta_s": progress.eta_s,
            "progress": progress.as_dict(),
        }
        try:
            self.publisher.publish(self.topic, make_event("progress", event_id, eval_id, data))
        except Exception as exc:  # informational: the next change is published again
            _LOG.warning("progress event not published", eval_id=eval_id, run_id=progress.run_id,
                         error=type(exc).__name__)
            return False
        _LOG.info("progress", eval_id=eval_id, run_id=progress.run_id, done=progress.done, total=progress.total,
                  eta_s=progress.eta_s)
        return True

    def start(self) -> ProgressMonitor:
        self.start_every(self.interval_s, "progress")
        return self
