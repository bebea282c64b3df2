"""One OpenCompass run folder read as typed records: facts, metric rows, per-(model, dataset) status, predictions.

Layout and the rules of which folder and which paths: :mod:`budeval.engine.results.layout`; scores and statuses
from every source: :mod:`budeval.engine.results.table`; decisions in docs/parser.md. The newest timestamp folder
is the run, whatever it holds: when it has no usable summary its scores come from its results files, and when it has
neither, :class:`~budeval.errors.NoSummaryError` says so -- an older folder is never read in its place.
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

from budeval.engine.results.layout import RunLayout, newest_run_folder, os_reason, timestamp_folders
from budeval.engine.results.loading import WHOLE_FILE_LIMIT, warn_replaced
from budeval.engine.results.predictions import (
    WorkerResult,
    _concat,
    file_batches,
    member_ranges,
    worker_parse,
    worker_parse_range,
)
from budeval.engine.results.table import ScoreTable, build_table
from budeval.engine.results.usage import read_usage
from budeval.engine.results.verdicts import Verdicts, dataset_verdicts
from budeval.errors import NoSummaryError, OutsideRunError, ResultParseError
from budeval.logs import get_logger
from budeval.schemas.results import DatasetStatus, MetricRow, PredictionBatch, RunFacts

VERSION = re.compile(r"opencompass[ =/-]+v?(\d+\.\d+\.\d+)", re.I)
#: Below this many bytes of predictions, starting worker processes costs more than it saves.
POOL_MIN_BYTES = 64 << 20


def parse_run(work_dir: Path, *, workers: int | None = None) -> OpenCompassRun:
    """Read an OpenCompass ``--work-dir``: its newest timestamp folder.

    Raises NoSummaryError when there is no timestamp folder, or the newest one holds no summary, no results and no
    predictions files (the run aborted or never ran; the message says what it holds). A run that only inferred is
    read: its datasets are failed with their task logs' reasons and its predictions are kept. ``workers``: parse
    worker processes for large runs (None: one per spare core, at most two; 0: none).
    """
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise NoSummaryError("no such run folder", path=str(work_dir))
    folder = newest_run_folder(work_dir)
    if folder is None:
        raise NoSummaryError("no timestamp folder (the run never started)", path=work_dir.name)
    run = OpenCompassRun(work_dir, folder, workers=workers)
    table = run.table
    if not (table.summaries or table.results_files or table.judged_files or table.predicted):
        what = ", ".join(sorted(c.name for c in folder.iterdir())) or "nothing"
        older = len(timestamp_folders(work_dir)) - 1
        more = f"; {older} older folder(s) not used" if older else ""
        raise NoSummaryError(
            f"the newest run folder {folder.name} has no usable summary, no results and no predictions files (the "
            f"run aborted or never ran; it holds: {what}{more})",
            path=work_dir.name,
        )
    return run


def score_presence(work_dir: Path) -> tuple[bool, bool, str]:
    """For a backend classifying a finished run: (any finite score, any (model, dataset) not ``ok``, what the run
    holds when it has no score). Never raises for unreadable output: that is "no score"."""
    try:
        run = parse_run(work_dir, workers=0)
        metrics, statuses = run.metrics, run.statuses
    except (ResultParseError, OSError) as exc:
        return False, False, str(exc).split(": ", 1)[-1][:300]
    scored = any(m.score is not None for m in metrics)
    summary = run.facts.summary_file
    return scored, any(s.status != "ok" for s in statuses), f"no score in {summary or 'its results files'}"


class OpenCompassRun:
    """Implements :class:`budeval.schemas.results.ParsedRun`; predictions are re-read from disk on each iteration."""

    def __init__(self, work_dir: Path, folder: Path, workers: int | None = None) -> None:
        self.work_dir = work_dir
        self.workers = workers
        #: Units (small files, ranges of large ones) the last ``prediction_batches`` pass had decoded by workers.
        self.worker_files = 0
        #: (model, dataset) -> why its predictions could not be read in the last pass (the rest of the run is kept).
        self.prediction_errors: dict[tuple[str, str], ResultParseError] = {}
        self.folder = folder
        self.layout = RunLayout(work_dir, folder)
        self._log = get_logger(run_folder=str(folder))

    def _rel(self, path: Path) -> str:
        return self.layout.rel(path)

    @cached_property
    def table(self) -> ScoreTable:
        return build_table(self.layout)

    @property
    def metrics(self) -> list[MetricRow]:
        return self.table.metrics

    @property
    def statuses(self) -> list[DatasetStatus]:
        """The table's statuses, and after a prediction pass, a dataset whose predictions could not be read is
        ``partial`` (it has scores) or stays not ok, with the parse error (file and line) in its reason."""
        if not self.prediction_errors:
            return self.table.statuses
        out: list[DatasetStatus] = []
        for status in self.table.statuses:
            error = self.prediction_errors.get((status.model, status.dataset))
            if error is None:
                out.append(status)
                continue
            why = f"predictions unreadable: {error}"[:500]
            name = "partial" if status.status == "ok" else status.status
            reason = why if status.reason is None else f"{status.reason}; {why}"[:500]
            out.append(status.model_copy(update={"status": name, "reason": reason}))
        return out

    def _prediction_failed(self, pair: tuple[str, str], exc: ResultParseError) -> None:
        self.prediction_errors[pair] = exc
        self._log.warning(
            "predictions unreadable; the dataset's other rows are kept",
            model=pair[0][:200],
            dataset=pair[1][:200],
            error=str(exc)[:300],
        )

    @cached_property
    def facts(self) -> RunFacts:
        summaries = [s.display for s in self.table.summaries]
        config = self.table.config_file
        return RunFacts(
            timestamp=self.folder.name,
            summary_file=summaries[0] if summaries else None,
            models=self.table.models,
            datasets=self.table.datasets,
            config_file=self._rel(config) if config is not None else None,
            opencompass_version=self._version(),
            summary_files=summaries,
            notes=self.table.notes,
            judges=self.table.judges,
            usage=read_usage(self.work_dir),
        )

    def _version(self) -> str | None:
        """OpenCompass does not write its version into the run folder. The local backend's console log may name it;
        else the header of the config budeval rendered (``# OpenCompass 0.5.4 config rendered by budeval``) says
        which version the runner image pins."""
        budeval_dir = self.work_dir / ".budeval"
        for candidate in (budeval_dir / "version", budeval_dir / "output.log", budeval_dir / "config.py"):
            if candidate.is_file() and not candidate.is_symlink():
                with candidate.open("rb") as f:
                    head = f.read(200_000).decode("utf-8", errors="replace")
                match = VERSION.search(head if candidate.name != "config.py" else head[:500])
                if match:
                    return match.group(1)
        return None

    # -- predictions -------------------------------------------------------------------------------------------------
    def prediction_files(self, model: str, dataset: str) -> list[Path]:
        """The (model, dataset)'s predictions files inside the run (see ``RunLayout.prediction_files``); none when
        its outputs would lie outside the run folder."""
        try:
            return self.layout.prediction_files(model, dataset)
        except OutsideRunError:
            return []

    def _results_file(self, model: str, dataset: str) -> Path:
        """The results file to take verdicts from, or a path that does not exist (no verdicts)."""
        return self.table.results_files.get((model, dataset), self.folder / "results" / ".none")

    def prediction_batches(self, batch_size: int = 50_000) -> Iterator[PredictionBatch]:
        tasks = [
            (model, dataset, files)
            for model, dataset in self.table.pairs
            if (files := self.prediction_files(model, dataset))
        ]
        workers = self.workers if self.workers is not None else default_workers()
        # Unsharded files can go to workers: small ones whole, large ones as byte ranges between members.
        poolable = sum(files[0].stat().st_size for _, _, files in tasks if len(files) == 1)
        if workers < 1 or poolable < POOL_MIN_BYTES:
            workers = 0
        batch = PredictionBatch()
        self.worker_files = 0
        self.prediction_errors = {}
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
                pair = (unit[2][0], unit[2][1])
                if pair in self.prediction_errors:
                    if future is not None:
                        pool.discard(future)
                    continue  # the rest of a dataset whose predictions broke: not read
                try:
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
                except ResultParseError as exc:
                    self._prediction_failed(pair, exc)
                except OSError as exc:  # unreadable (permissions): the dataset's reason, no host path
                    self._prediction_failed(pair, ResultParseError(f"cannot read: {os_reason(exc)}"))
        if len(batch):
            yield batch

    def _units(self, tasks: list[tuple[str, str, list[Path]]], pooled: bool) -> Iterator[tuple[bool, Any, Any]]:
        """(to a worker?, worker function or None, its task or the arguments of ``_read_here``), in row order."""
        for model, dataset, files in tasks:
            if pooled and len(files) == 1:
                file = files[0]
                results = self._results_file(model, dataset)
                n = self.table.config.replicas.get(dataset, 1)
                names = (model, dataset, str(file), self._rel(file), str(results), self._rel(results), n)
                if file.stat().st_size <= WHOLE_FILE_LIMIT:
                    yield True, worker_parse, names
                    continue
                try:
                    ranges = member_ranges(file, self._rel(file))
                    first = next(ranges, None)
                    if first is not None:
                        for start, end, last, line in itertools.chain([first], ranges):
                            yield True, worker_parse_range, (*names, start, end, last, line)
                        continue
                except ResultParseError as exc:
                    self._prediction_failed((model, dataset), exc)
                    continue
            yield False, None, (model, dataset, files)

    def _read_here(self, model: str, dataset: str, files: list[Path]) -> Iterator[PredictionBatch]:
        results = self._results_file(model, dataset)
        n = self.table.config.replicas.get(dataset, 1)
        verdicts: Verdicts = dataset_verdicts(results, self._rel(results), files, n)
        offset = 0
        for file in files:
            count = 0
            for part in file_batches(model, dataset, file, self._rel(file), verdicts, offset):
                count += len(part)
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

    def discard(self, future: Future[WorkerResult]) -> None:
        """A submitted unit whose result is no longer wanted (its dataset already failed)."""
        self._in_flight -= 1
        future.cancel()

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
