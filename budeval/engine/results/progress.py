"""A running OpenCompass run's progress, read from what it writes while it runs: examples done / total per dataset.

Where the facts are (:mod:`budeval.engine.results.layout` knows the paths; OpenCompass 0.5.4 sources in brackets):

* a task has **started** when its log ``logs/infer/{model}/{task}.out`` exists (the runner redirects the task there);
* **examples done**: the inference checkpoint ``predictions/{model}/tmp_{task}.jsonl`` gets one line per example
  after every batch (``GenInferencerOutputHandler.write_to_jsonl``); at the end of inference the whole
  ``predictions/{model}/{task}.json`` (``json.dump(indent=4)``: one top-level key per example) replaces it;
* **batches done / total and the remaining time**: the inferencer's tqdm bar in the task log (``tqdm(dataloader)``,
  one step per batch), after its ``Starting inference process`` line;
* **evaluated**: ``results/{model}/{task}.json`` exists.

The total number of examples is not written anywhere before inference ends: while a task infers it is estimated from
the bar (examples done + batches left x examples per batch so far; an overestimate by less than one batch, shown as
``estimated``); once the predictions file is written it is exact. The ETA is inference's (the bars' remaining time;
evaluation, usually seconds, is not included). Nothing here raises for a missing, partial or
unreadable file: a task whose files cannot be read yet reports what could be read.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from budeval.engine.results.layout import (
    INFERENCE_STARTS,
    PROGRESS_BAR,
    RunLayout,
    newest_run_folder,
)
from budeval.errors import OutsideRunError

#: Bytes of a task log's end searched for its progress bar.
LOG_WINDOW = 64 * 1024
#: How a top-level key of a ``json.dump(..., indent=4)`` predictions file starts (one per example).
_TOP_LEVEL_KEY = b'\n    "'


@dataclass(frozen=True)
class Bar:
    """The last state of a tqdm bar: ``steps`` of ``total`` done, seconds ``elapsed`` and ``remaining`` (None
    before the first step)."""

    steps: int
    total: int
    elapsed_s: float
    remaining_s: float | None


@dataclass(frozen=True)
class TaskProgress:
    """One OpenCompass task (a model on a dataset, or a shard ``{dataset}_{i}``).

    ``stage``: ``started`` (log only), ``inferring``, ``inferred`` (predictions written, not yet evaluated),
    ``evaluated``. ``done``/``total``: examples (``total`` None while unknown; ``estimated`` while it is the bar's
    estimate). ``eta_s``: seconds left in inference by the bar (0 once inferred; None when unknown)."""

    model: str
    dataset: str
    stage: str
    done: int
    total: int | None
    estimated: bool = False
    batches_done: int | None = None
    batches_total: int | None = None
    eta_s: float | None = None
    elapsed_s: float | None = None


@dataclass(frozen=True)
class RunProgress:
    """A run's progress: its tasks, and the sums over them. ``datasets_planned``: how many the run was rendered with
    (tasks not started yet count in ``eta_s`` at the mean duration of the started ones); ``total`` None while any
    started task's total is unknown or a planned one has not started; ``eta_s`` None when nothing is known yet."""

    run_id: str
    tasks: list[TaskProgress] = field(default_factory=list)
    #: The OpenCompass run folder's name (``YYYYmmdd_HHMMSS``; a re-run writes a new one); None before it exists.
    stamp: str | None = None
    datasets_planned: int = 0
    done: int = 0
    total: int | None = None
    eta_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the ``progress`` of ``GET /evals/{id}`` and of live ``progress`` events)."""
        return asdict(self)


def _seconds(clock: str) -> float:
    """``MM:SS`` or ``H:MM:SS`` (tqdm's format) as seconds."""
    value = 0.0
    for part in clock.split(":"):
        value = value * 60 + int(part)
    return value


def read_bar(log: Path, window: int = LOG_WINDOW) -> Bar | None:
    """The inferencer's last bar in a task log (see the module docstring), None when it has not started one."""
    try:
        with log.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - window))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    start = text.rfind(INFERENCE_STARTS)
    if start < 0 and size <= window:
        return None  # the whole log is here and inference has not started: earlier bars load the dataset
    last = None
    for last in PROGRESS_BAR.finditer(text, max(start, 0)):  # noqa: B007 (the last one is wanted)
        pass
    if last is None:
        return None
    steps, total, elapsed, remaining = last.groups()
    return Bar(int(steps), int(total), _seconds(elapsed), None if remaining == "?" else _seconds(remaining))


class _Counter:
    """Counts occurrences of a byte pattern in a growing file, reading only what was appended since the last count
    (a file that shrank or was replaced is counted again)."""

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        self._seen: dict[Path, tuple[int, int, int, bytes]] = {}  # path -> (inode, offset, count, carried tail)
        self._lock = threading.Lock()

    def count(self, path: Path) -> int | None:
        try:
            with path.open("rb") as f:
                inode = os.fstat(f.fileno()).st_ino
                with self._lock:
                    known_inode, offset, count, carry = self._seen.get(path, (inode, 0, 0, b""))
                if known_inode != inode or f.seek(0, os.SEEK_END) < offset:
                    offset, count, carry = 0, 0, b""
                f.seek(offset)
                while chunk := f.read(1 << 20):
                    data = carry + chunk
                    count += data.count(self.pattern)
                    # shorter than the pattern, so no occurrence lies wholly in it: each is counted once
                    keep = len(self.pattern) - 1
                    carry = data[-keep:] if keep else b""
                    offset += len(chunk)
        except OSError:
            return None
        with self._lock:
            self._seen[path] = (inode, offset, count, carry)
        return count


class ProgressReader:
    """Reads runs' progress; keeps per-file counts so that a poll reads only what was appended since the last one.
    One reader per process (thread-safe)."""

    def __init__(self) -> None:
        self._lines = _Counter(b"\n")
        self._keys = _Counter(_TOP_LEVEL_KEY)

    def task(self, layout: RunLayout, model: str, task: str) -> TaskProgress:
        """One task's progress (see :class:`TaskProgress`)."""
        log, checkpoint, predictions, results = layout.task_files(model, task)
        if predictions.is_file():
            examples = self._keys.count(predictions)
            stage = "evaluated" if results.is_file() else "inferred"
            return TaskProgress(model, task, stage, examples or 0, examples, eta_s=0.0)
        bar = read_bar(log)
        done = (self._lines.count(checkpoint) or 0) if checkpoint.is_file() else 0
        if bar is None:
            stage = "inferring" if done else "started"
            return TaskProgress(model, task, stage, done, None)
        total: int | None
        if bar.steps >= bar.total:
            total, estimated = done, False
        elif bar.steps > 0 and done > 0:
            total, estimated = done + (bar.total - bar.steps) * math.ceil(done / bar.steps), True
        else:
            total, estimated = None, False
        return TaskProgress(model, task, "inferring", done, total, estimated, bar.steps, bar.total, bar.remaining_s,
                            bar.elapsed_s)

    def run(self, run_id: str, work_dir: Path, datasets_planned: int = 0) -> RunProgress:
        """The progress of the run in ``work_dir`` (its newest timestamp folder); no tasks when it has not started."""
        try:
            folder = newest_run_folder(work_dir)
        except OutsideRunError:
            folder = None
        if folder is None:
            return RunProgress(run_id, [], None, datasets_planned)
        layout = RunLayout(work_dir, folder)
        tasks: list[TaskProgress] = []
        try:
            for model, task in layout.started_tasks("infer"):
                tasks.append(self.task(layout, model, task))
        except (OSError, OutsideRunError):
            pass  # a folder that changed under us or leaves the run: what was read so far
        return summarize(run_id, tasks, datasets_planned, folder.name)


def summarize(run_id: str, tasks: list[TaskProgress], datasets_planned: int = 0,
              stamp: str | None = None) -> RunProgress:
    """Sums over ``tasks`` (see :class:`RunProgress`)."""
    waiting = max(0, datasets_planned - len({t.dataset for t in tasks}))
    totals = [t.total for t in tasks]
    total = None if waiting or not tasks or None in totals else sum(t for t in totals if t is not None)
    eta: float | None = None
    if tasks and all(t.eta_s is not None for t in tasks):
        eta = sum(t.eta_s or 0.0 for t in tasks)
        durations = [(t.elapsed_s or 0.0) + (t.eta_s or 0.0) for t in tasks if t.stage == "inferring"]
        if waiting:  # not started: as long as the ones inferring now take in all, else unknown
            eta = eta + waiting * sum(durations) / len(durations) if durations else None
    return RunProgress(run_id, tasks, stamp, datasets_planned, sum(t.done for t in tasks), total, eta)
