"""One OpenCompass run folder read as typed records: facts, metric rows, per-(model, dataset) status, predictions.

Layout: ``{work_dir}/{YYYYmmdd_HHMMSS}/`` with ``configs/``, ``logs/{infer,eval}/{model}/``, ``predictions/{model}/``,
``results/{model}/`` and ``summary/``.
Decisions (see docs/parser.md): the newest timestamp folder that holds a summary is the run; inside it the newest
``summary_*.csv`` wins (``-r`` reuse leaves several); dot folders (the local backend's ``.budeval/``) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from budeval.engine.results.jsonstream import JsonStream
from budeval.engine.results.summary import Summary, read_summary
from budeval.errors import NoSummaryError, ResultParseError
from budeval.logs import get_logger
from budeval.schemas.results import DatasetStatus, MetricRow, PredictionBatch, RunFacts

TIMESTAMP = re.compile(r"^\d{8}_\d{6}$")
SUMMARY = re.compile(r"^summary_(\d{8}_\d{6})\.csv$")
#: Last lines of a task log that say it failed (a Python traceback's final line, or OpenCompass's own ERROR lines).
ERROR_LINE = re.compile(r"(^\w[\w.]*(Error|Exception)\b.*$)|( - ERROR - .*$)", re.M)
VERSION = re.compile(r"opencompass[ =/-]+v?(\d+\.\d+\.\d+)", re.I)
UNKNOWN, WRONG, RIGHT = 0, 1, 2


def parse_run(work_dir: Path) -> OpenCompassRun:
    """Read an OpenCompass ``--work-dir``. Raises NoSummaryError when no timestamp folder has a summary."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise NoSummaryError("no such run folder", path=str(work_dir))
    folders = sorted((p for p in work_dir.iterdir() if p.is_dir() and TIMESTAMP.match(p.name)), reverse=True)
    for folder in folders:
        summaries = _summaries(folder)
        if summaries:
            return OpenCompassRun(work_dir, folder, summaries[-1])
    what = "only " + ", ".join(sorted({c.name for f in folders for c in f.iterdir()})) if folders else "no output"
    raise NoSummaryError(f"no summary_*.csv (the run aborted or never ran; {what})", path=str(work_dir))


def _summaries(folder: Path) -> list[Path]:
    found = [(m.group(1), p) for p in (folder / "summary").glob("summary_*.csv") if (m := SUMMARY.match(p.name))]
    return [p for _, p in sorted(found)]


@dataclass(frozen=True)
class _Task:
    model: str
    dataset: str


class OpenCompassRun:
    """Implements :class:`budeval.schemas.results.ParsedRun`; predictions are re-read from disk on each iteration."""

    def __init__(self, work_dir: Path, folder: Path, summary_file: Path) -> None:
        self.work_dir = work_dir
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
        configs = sorted((self.folder / "configs").glob("*.py"))
        return RunFacts(
            timestamp=self.folder.name,
            summary_file=self._rel(self._summary_file),
            models=self.summary.models,
            datasets=self.summary.datasets,
            config_file=self._rel(configs[-1]) if configs else None,
            opencompass_version=self._version(),
        )

    def _version(self) -> str | None:
        for candidate in (self.work_dir / ".budeval" / "output.log", self.work_dir / ".budeval" / "version"):
            if candidate.is_file():
                match = VERSION.search(candidate.read_text(errors="replace")[:200_000])
                if match:
                    return match.group(1)
        return None

    # -- statuses ----------------------------------------------------------------------------------------------------
    @cached_property
    def statuses(self) -> list[DatasetStatus]:
        out: list[DatasetStatus] = []
        for model in self.summary.models:
            for dataset in self.summary.datasets:
                scores = [r.score for r in self.summary.rows if r.model == model and r.dataset == dataset]
                have = sum(s is not None for s in scores)
                if scores and have == len(scores):
                    out.append(DatasetStatus(model=model, dataset=dataset, status="ok"))
                    continue
                error = self._task_error(model, dataset)
                if have:
                    out.append(DatasetStatus(model=model, dataset=dataset, status="partial", reason=error))
                elif error or not (self.folder / "results" / model / f"{dataset}.json").is_file():
                    reason = error or "no results file (the task produced no result)"
                    out.append(DatasetStatus(model=model, dataset=dataset, status="failed", reason=reason))
                else:
                    out.append(DatasetStatus(model=model, dataset=dataset, status="missing"))
        return out

    def _task_error(self, model: str, dataset: str) -> str | None:
        """The last error line of the (model, dataset) task logs; infer first (an infer failure causes the eval one)."""
        for stage in ("infer", "eval"):
            log = self.folder / "logs" / stage / model / f"{dataset}.out"
            if not log.is_file():
                continue
            tail = _tail(log, 64 * 1024)
            errors = ERROR_LINE.findall(tail)
            if errors:
                line = next(part for part in errors[-1] if part)
                return f"{stage}: {line.strip()}"[:500]
        return None

    # -- predictions -------------------------------------------------------------------------------------------------
    def prediction_files(self, model: str, dataset: str) -> list[Path]:
        """``{dataset}.json`` or, for a dataset split into shards, ``{dataset}_0.json``, ``{dataset}_1.json``, ..."""
        base = self.folder / "predictions" / model
        whole = base / f"{dataset}.json"
        if whole.is_file():
            return [whole]
        shards: list[Path] = []
        while (shard := base / f"{dataset}_{len(shards)}.json").is_file():
            shards.append(shard)
        return shards

    def prediction_batches(self, batch_size: int = 50_000) -> Iterator[PredictionBatch]:
        batch = PredictionBatch()
        for model in self.summary.models:
            for dataset in self.summary.datasets:
                files = self.prediction_files(model, dataset)
                if not files:
                    continue
                correct = self._correctness(model, dataset)
                offset = 0
                for file in files:
                    count = 0
                    for index, entry in self._entries(file):
                        count = max(count, index + 1)
                        index += offset
                        mark = correct[index] if index < len(correct) else UNKNOWN
                        batch.model.append(model)
                        batch.dataset.append(dataset)
                        batch.example_index.append(index)
                        batch.prompt.append(_text(entry.get("origin_prompt")))
                        batch.prediction.append(_text(entry.get("prediction")))
                        batch.gold.append(_text(entry.get("gold")))
                        batch.correct.append(None if mark == UNKNOWN else mark == RIGHT)
                        if len(batch.example_index) >= batch_size:
                            yield batch
                            batch = PredictionBatch()
                    offset += count
        if len(batch.example_index):
            yield batch

    def _entries(self, file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        display = self._rel(file)
        with JsonStream(file, display) as stream:
            if stream.start() != "{":
                raise ResultParseError("expected a JSON object of examples", path=display, line=1)
            for key, _ in stream.items():
                entry = stream.value()
                if not key.isdigit() or not isinstance(entry, dict):
                    raise ResultParseError(f"example {key[:40]!r} is not an indexed object", path=display)
                yield int(key), entry
            stream.finish()
            if stream.replaced:
                self._log.warning("invalid UTF-8 replaced with U+FFFD", file=display)

    def _correctness(self, model: str, dataset: str) -> bytearray:
        """Per example: UNKNOWN, WRONG or RIGHT from the evaluator's ``details`` (1 byte per example, streamed)."""
        marks = bytearray()
        path = self.folder / "results" / model / f"{dataset}.json"
        if not path.is_file():
            return marks
        display = self._rel(path)

        def put(index: int, value: Any) -> None:
            if not isinstance(value, bool):
                return
            if index >= len(marks):
                marks.extend(bytes(index + 1 - len(marks)))
            marks[index] = RIGHT if value else WRONG

        with JsonStream(path, display) as stream:
            if stream.start() != "{":
                raise ResultParseError("expected a JSON object", path=display, line=1)
            for key, _ in stream.items():
                if key != "details":
                    stream.skip()
                    continue
                if stream.start() == "{":  # {"type": ..., "0": {..., "correct": bool?}, ...}
                    for item_key, _ in stream.items():
                        item = stream.value()
                        if item_key.isdigit() and isinstance(item, dict):
                            put(int(item_key), _verdict(item.get("correct")))
                else:  # [{"example_abbr": "<dataset>_<i>", "correct": [bool], ...}, ...]
                    for position, _ in enumerate(stream.elements()):
                        item = stream.value()
                        if isinstance(item, dict):
                            put(_example_index(item.get("example_abbr"), position), _verdict(item.get("correct")))
            stream.finish()
        return marks


def _verdict(value: Any) -> bool | None:
    """``correct`` is a bool or, with several predictions per example, a list: right only if all are."""
    if isinstance(value, bool):
        return value
    if isinstance(value, list) and value and all(isinstance(v, bool) for v in value):
        return all(value)
    return None


def _example_index(abbr: Any, position: int) -> int:
    if isinstance(abbr, str):
        _, _, tail = abbr.rpartition("_")
        if tail.isdigit():
            return int(tail)
    return position


def _text(value: Any) -> str:
    """Prompts may be chat turns: ``[{"role": "HUMAN", "prompt": "..."}]`` -> ``"HUMAN: ..."`` lines."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for turn in value:
            if isinstance(turn, dict) and "prompt" in turn:
                parts.append(f"{turn.get('role', '')}: {turn['prompt']}")
            else:
                parts.append(_text(turn))
        return "\n".join(parts)
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _tail(path: Path, size: int) -> str:
    with path.open("rb") as f:
        f.seek(0, 2)
        length = f.tell()
        f.seek(max(0, length - size))
        return f.read().decode("utf-8", errors="replace")
