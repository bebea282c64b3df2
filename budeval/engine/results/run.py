"""One OpenCompass run folder read as typed records: facts, metric rows, per-(model, dataset) status, predictions.

Layout: ``{work_dir}/{YYYYmmdd_HHMMSS}/`` with ``configs/``, ``logs/{infer,eval}/{model}/``, ``predictions/{model}/``,
``results/{model}/`` and ``summary/``.
Decisions (see docs/parser.md): the newest timestamp folder that holds a summary is the run; inside it the newest
``summary_*.csv`` wins (``-r`` reuse leaves several); dot folders (the local backend's ``.budeval/``) are ignored.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import cached_property
from pathlib import Path
from typing import Any

from budeval.engine.results.loading import WHOLE_FILE_LIMIT, warn_replaced
from budeval.engine.results.predictions import (
    WorkerResult,
    _concat,
    file_batches,
    member_ranges,
    worker_parse,
    worker_parse_range,
)
from budeval.engine.results.summary import Summary, read_summary
from budeval.engine.results.verdicts import read_verdicts
from budeval.errors import NoSummaryError
from budeval.logs import get_logger
from budeval.schemas.results import DatasetStatus, MetricRow, PredictionBatch, RunFacts

TIMESTAMP = re.compile(r"^\d{8}_\d{6}$")
SUMMARY = re.compile(r"^summary_(\d{8}_\d{6})\.csv$")
#: Last lines of a task log that say it failed (a Python traceback's final line, or OpenCompass's own ERROR lines).
ERROR_LINE = re.compile(r"(^\w[\w.]*(Error|Exception)\b.*$)|( - ERROR - .*$)", re.M)
VERSION = re.compile(r"opencompass[ =/-]+v?(\d+\.\d+\.\d+)", re.I)
#: Below this many bytes of predictions, starting worker processes costs more than it saves.
POOL_MIN_BYTES = 64 << 20


def parse_run(work_dir: Path, *, workers: int | None = None) -> OpenCompassRun:
    """Read an OpenCompass ``--work-dir``. Raises NoSummaryError when no timestamp folder has a summary.

    ``workers``: parse worker processes for large runs (None: one per spare core, at most two; 0: none).
    """
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise NoSummaryError("no such run folder", path=str(work_dir))
    folders = sorted((p for p in work_dir.iterdir() if p.is_dir() and TIMESTAMP.match(p.name)), reverse=True)
    for folder in folders:
        summaries = _summaries(folder)
        if summaries:
            return OpenCompassRun(work_dir, folder, summaries[-1], workers=workers)
    what = "only " + ", ".join(sorted({c.name for f in folders for c in f.iterdir()})) if folders else "no output"
    raise NoSummaryError(f"no summary_*.csv (the run aborted or never ran; {what})", path=str(work_dir))


def _summaries(folder: Path) -> list[Path]:
    found = [(m.group(1), p) for p in (folder / "summary").glob("summary_*.csv") if (m := SUMMARY.match(p.name))]
    return [p for _, p in sorted(found)]


class OpenCompassRun:
    """Implements :class:`budeval.schemas.results.ParsedRun`; predictions are re-read from disk on each iteration."""

    def __init__(self, work_dir: Path, folder: Path, summary_file: Path, workers: int | None = None) -> None:
        self.work_dir = work_dir
        self.workers = workers
        #: Units (small files, ranges of large ones) the last ``prediction_batches`` pass had decoded by workers.
        self.worker_files = 0
        self.folder = folder
        self._summary_file = summary_file
        self._log = get_logger(run_folder=str(folder))

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.work_dir).as_posix()

    @cached_property
    def summary(self) -> Summary:
        return read_summary(self._summary_file, self._rel(self._summary_file))

    @property
    def metrics(self) -> list[MetricRow]:
        return self.summary.rows

    @cached_property
    def facts(self) -> RunFacts:
        # `-r` reuse adds a config named after the new timestamp: the one of the chosen summary, else the newest.
        configs = sorted((self.folder / "configs").glob("*.py"))
        stamp = self._summary_file.stem.removeprefix("summary_")
        configs = [c for c in configs if c.name.startswith(stamp + "_")] or configs
        return RunFacts(
            timestamp=self.folder.name,
            summary_file=self._rel(self._summary_file),
            models=self.summary.models,
            datasets=self.summary.datasets,
            config_file=self._rel(configs[-1]) if configs else None,
            opencompass_version=self._version(),
        )

    def _version(self) -> str | None:
        """OpenCompass does not write its version into the run folder. The local backend's console log may name it;
        else the header of the config budeval rendered (``# OpenCompass 0.5.4 config rendered by budeval``) says
        which version the runner image pins."""
        budeval_dir = self.work_dir / ".budeval"
        for candidate in (budeval_dir / "version", budeval_dir / "output.log", budeval_dir / "config.py"):
            if candidate.is_file():
                with candidate.open("rb") as f:
                    head = f.read(200_000).decode("utf-8", errors="replace")
                match = VERSION.search(head if candidate.name != "config.py" else head[:500])
                if match:
                    return match.group(1)
        return None

    # -- statuses ----------------------------------------------------------------------------------------------------
    @cached_property
    def statuses(self) -> list[DatasetStatus]:
        out: list[DatasetStatus] = []
        scores_of: dict[tuple[str, str], list[float | None]] = {}
        for row in self.summary.rows:
            scores_of.setdefault((row.model, row.dataset), []).append(row.score)
        for model in self.summary.models:
            for dataset in self.summary.datasets:
                scores = scores_of.get((model, dataset), [])
                have = sum(s is not None for s in scores)
                if scores and have == len(scores):
                    out.append(DatasetStatus(model=model, dataset=dataset, status="ok"))
                    continue
                error = self._task_error(model, dataset)
                if have:
                    out.append(DatasetStatus(model=model, dataset=dataset, status="partial", reason=error))
                elif error or not (self.folder / "results" / model / f"{dataset}.json").is_file():
                    reason = error or "no results file (the task produced no result)"
                    stopped = self._stopped_inference(model, dataset)
                    reason = f"{reason}; {stopped}" if stopped else reason
                    out.append(DatasetStatus(model=model, dataset=dataset, status="failed", reason=reason))
                else:
                    out.append(DatasetStatus(model=model, dataset=dataset, status="missing"))
        return out

    def _stopped_inference(self, model: str, dataset: str) -> str | None:
        """OpenCompass checkpoints inference to ``tmp_{dataset}.jsonl`` and deletes it when done: left over, it says
        how far an interrupted task got."""
        tmp = self.folder / "predictions" / model / f"tmp_{dataset}.jsonl"
        if not tmp.is_file():
            return None
        with tmp.open("rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        return f"inference stopped after {lines} examples ({self._rel(tmp)})"

    def _task_logs(self, stage: str, model: str, dataset: str) -> list[Path]:
        """``{dataset}.out``, or one log per shard (``{dataset}_0.out``, ...) when the dataset was split."""
        return _whole_or_shards(self.folder / "logs" / stage / model, dataset, ".out")

    def _task_error(self, model: str, dataset: str) -> str | None:
        """The last error line of the (model, dataset) task logs; infer first (an infer failure causes the eval one)."""
        for stage in ("infer", "eval"):
            for log in self._task_logs(stage, model, dataset):
                errors = ERROR_LINE.findall(_tail(log, 64 * 1024))
                if errors:
                    line = next(part for part in errors[-1] if part)
                    return f"{stage}: {line.strip()}"[:500]
        return None

    # -- predictions -------------------------------------------------------------------------------------------------
    def prediction_files(self, model: str, dataset: str) -> list[Path]:
        """``{dataset}.json`` or, for a dataset split into shards, ``{dataset}_0.json``, ``{dataset}_1.json``, ...
        (read up to the first gap, as OpenCompass's own evaluator does)."""
        return _whole_or_shards(self.folder / "predictions" / model, dataset, ".json")

    def prediction_batches(self, batch_size: int = 50_000) -> Iterator[PredictionBatch]:
        tasks = [
            (model, dataset, files)
            for model in self.summary.models
            for dataset in self.summary.datasets
            if (files := self.prediction_files(model, dataset))
        ]
        workers = self.workers if self.workers is not None else default_workers()
        # Unsharded files can go to workers: small ones whole, large ones as byte ranges between members.
        poolable = sum(files[0].stat().st_size for _, _, files in tasks if len(files) == 1)
        if workers < 1 or poolable < POOL_MIN_BYTES:
            workers = 0
        batch = PredictionBatch()
        self.worker_files = 0
        pending: deque[tuple[Future[WorkerResult] | None, Any]] = deque()
        with _Pool(workers) as pool:
            units = self._units(tasks, pooled=workers > 0)
            while True:
                while pool.in_flight < 2 * workers and (unit := next(units, None)) is not None:
                    pending.append((pool.submit(unit[1], unit[2]), unit) if unit[0] else (None, unit))
                if not pending:
                    unit = next(units, None)
                    if unit is None:
                        break
                    pending.append((None, unit))
                future, unit = pending.popleft()
                parts: Iterable[PredictionBatch]
                if unit[0]:
                    parts, by_worker = pool.result(future, unit[1], unit[2])
                    self.worker_files += by_worker
                else:
                    parts = self._read_here(*unit[2])
                for part in parts:
                    batch = part if not len(batch) else _concat(batch, part)
                    if len(batch) >= batch_size:
                        yield batch
                        batch = PredictionBatch()
        if len(batch):
            yield batch

    def _units(self, tasks: list[tuple[str, str, list[Path]]], pooled: bool) -> Iterator[tuple[bool, Any, Any]]:
        """(to a worker?, worker function or None, its task or the arguments of ``_read_here``), in row order."""
        for model, dataset, files in tasks:
            if pooled and len(files) == 1:
                file = files[0]
                results = self.folder / "results" / model / f"{dataset}.json"
                names = (model, dataset, str(file), self._rel(file), str(results), self._rel(results))
                if file.stat().st_size <= WHOLE_FILE_LIMIT:
                    yield True, worker_parse, names
                    continue
                ranges = member_ranges(file, self._rel(file))
                first = next(ranges, None)
                if first is not None:
                    for start, end, last, line in itertools.chain([first], ranges):
                        yield True, worker_parse_range, (*names, start, end, last, line)
                    continue
            yield False, None, (model, dataset, files)

    def _read_here(self, model: str, dataset: str, files: list[Path]) -> Iterator[PredictionBatch]:
        results = self.folder / "results" / model / f"{dataset}.json"
        marks = read_verdicts(results, self._rel(results))
        offset = 0
        for file in files:
            count = 0
            for part in file_batches(model, dataset, file, self._rel(file), marks, offset):
                count = max(count, max(part.example_index) - offset + 1)
                yield part
            offset += count


def default_workers() -> int:
    """Parse workers beside this process: one core is left to the caller (the store's inserts), at most two."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(2, cpus - 1))


class _Pool:
    """Predictions decoded in spawned worker processes while this one inserts: decoding holds the GIL, so threads
    in this process cannot overlap it with the store's Python-side serialisation. At most ``2 * workers`` results are
    in flight, each one small file or one ~1 MiB range of a large one, so memory stays bounded. If a worker dies (OOM
    kill), the rest is decoded in this process by the same functions."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._in_flight = 0
        self._log = get_logger(component="parser")

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def __enter__(self) -> _Pool:
        if self.workers:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def submit(self, function: Callable[[Any], WorkerResult], task: Any) -> Future[WorkerResult] | None:
        if self._executor is None:
            return None
        self._in_flight += 1
        return self._executor.submit(function, task)

    def result(
        self, future: Future[WorkerResult] | None, function: Callable[[Any], WorkerResult], task: Any
    ) -> tuple[list[PredictionBatch], bool]:
        """The unit's batch and whether a worker made it (else it was decoded here: no pool, or the pool broke)."""
        by_worker = future is not None
        try:
            if future is None:
                batch, notes, error = function(task)
            else:
                self._in_flight -= 1
                batch, notes, error = future.result()
        except BrokenProcessPool as exc:
            if self._executor is not None:
                self._log.warning("parse worker died; decoding here", error=str(exc)[:200])
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
            batch, notes, error = function(task)
            by_worker = False
        for display, count in notes:
            warn_replaced(display, count)
        if error is not None:
            raise error
        return ([batch] if batch is not None else []), by_worker


def _whole_or_shards(folder: Path, dataset: str, suffix: str) -> list[Path]:
    """``{dataset}{suffix}``, else the shards ``{dataset}_0{suffix}``, ``_1`` ... up to the first gap."""
    whole = folder / f"{dataset}{suffix}"
    if whole.is_file():
        return [whole]
    shards: list[Path] = []
    while (shard := folder / f"{dataset}_{len(shards)}{suffix}").is_file():
        shards.append(shard)
    return shards


def _tail(path: Path, size: int) -> str:
    with path.open("rb") as f:
        f.seek(0, 2)
        length = f.tell()
        f.seek(max(0, length - size))
        return f.read().decode("utf-8", errors="replace")
