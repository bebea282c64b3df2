"""One OpenCompass run folder read as typed records: facts, metric rows, per-(model, dataset) status, predictions.

Layout: ``{work_dir}/{YYYYmmdd_HHMMSS}/`` with ``configs/``, ``logs/{infer,eval}/{model}/``, ``predictions/{model}/``,
``results/{model}/`` and ``summary/``.
Decisions (see docs/parser.md): the newest timestamp folder that holds a summary is the run; inside it the newest
``summary_*.csv`` wins (``-r`` reuse leaves several); dot folders (the local backend's ``.budeval/``) are ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

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
_MARK: tuple[bool | None, ...] = (None, False, True)
DETAILS_SHAPE = re.compile(rb'"details"\s*:\s*([\[{])')
CORRECT_KEY = re.compile(rb'"correct"\s*:\s*(\[[^\]]*\]|true|false|null)')
ABBR_INDEX = re.compile(rb'"example_abbr"\s*:\s*"[^"\\]*?_(\d+)"')
#: Files up to this size are decoded whole (fast, C); larger ones are streamed (memory bounded by this, not the file).
WHOLE_FILE_LIMIT = 16 << 20


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
                    for keys, entries in self._entries(file):
                        display = self._rel(file)
                        try:
                            local = [int(k) for k in keys]
                        except ValueError:
                            bad = next(k for k in keys if not k.isdigit())
                            raise ResultParseError(f"example key {bad[:40]!r} is not an index", path=display) from None
                        if not all(type(e) is dict for e in entries):
                            raise ResultParseError("an example is not a JSON object", path=display)
                        count = max(count, max(local, default=-1) + 1)
                        index = [i + offset for i in local] if offset else local
                        n, known = len(index), len(correct)
                        batch.model.extend([model] * n)
                        batch.dataset.extend([dataset] * n)
                        batch.example_index.extend(index)
                        batch.prompt.extend(_texts([e.get("origin_prompt") for e in entries]))
                        batch.prediction.extend(_texts([e.get("prediction") for e in entries]))
                        batch.gold.extend(_texts([e.get("gold") for e in entries]))
                        batch.correct.extend(
                            [_MARK[correct[i]] if i < known else None for i in index] if known else [None] * n
                        )
                        if len(batch.example_index) >= batch_size:
                            yield batch
                            batch = PredictionBatch()
                    offset += count
        if len(batch.example_index):
            yield batch

    def _entries(self, file: Path, chunk: int = 2000) -> Iterator[tuple[list[str], list[Any]]]:
        """(keys, values) of a predictions file in chunks: a small file in one piece (``json.loads`` is the fastest
        reader there is), a large one streamed, so memory stays bounded by WHOLE_FILE_LIMIT whatever the size."""
        display = self._rel(file)
        data = _load_small(file, display)
        if data is not None:
            if not isinstance(data, dict):
                raise ResultParseError("expected a JSON object of examples", path=display, line=1)
            yield list(data.keys()), list(data.values())
            return
        with JsonStream(file, display) as stream:
            if stream.start() != "{":
                raise ResultParseError("expected a JSON object of examples", path=display, line=1)
            keys: list[str] = []
            values: list[Any] = []
            for key, _ in stream.items():
                keys.append(key)
                values.append(stream.value())
                if len(keys) >= chunk:
                    yield keys, values
                    keys, values = [], []
            stream.finish()
            if keys:
                yield keys, values
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

        if path.stat().st_size <= WHOLE_FILE_LIMIT:
            raw = path.read_bytes()
            if b'"correct"' not in raw:
                return marks  # this evaluator records no per-example verdict: nothing to decode
            shape = DETAILS_SHAPE.search(raw)
            if shape is not None and shape.group(1) == b"[":
                _scan_list_verdicts(raw, marks)
                return marks
        data = _load_small(path, display)
        if data is not None:
            details = data.get("details") if isinstance(data, dict) else None
            if isinstance(details, dict):
                for item_key, item in details.items():
                    if item_key.isdigit() and isinstance(item, dict):
                        put(int(item_key), _verdict(item.get("correct")))
            elif isinstance(details, list):
                for position, item in enumerate(details):
                    if isinstance(item, dict):
                        put(_example_index(item.get("example_abbr"), position), _verdict(item.get("correct")))
            return marks
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


def _scan_list_verdicts(raw: bytes, marks: bytearray) -> None:
    """List-shaped details, read without decoding them: the ``"correct": [...]`` values in order, placed by the index
    at the end of each ``"example_abbr": "<dataset>_<i>"`` (by position if some item has no abbr).

    Safe on arbitrary text: inside a JSON string every quote is escaped, so the bare-quoted keys matched here can only
    be real keys. Decoding the whole file instead costs about half of the parse time of a run.
    """
    codes = [_VERDICT_CODES.get(flags) or _verdict_code(flags) for flags in CORRECT_KEY.findall(raw)]
    abbrs = ABBR_INDEX.findall(raw)
    if len(abbrs) == len(codes):
        index = [int(i) for i in abbrs]
        size = max(index, default=-1) + 1
        if len(marks) < size:
            marks.extend(bytes(size - len(marks)))
        for i, code in zip(index, codes, strict=True):
            marks[i] = code
    else:
        marks[:] = bytes(codes)


_VERDICT_CODES: dict[bytes, int] = {}


def _verdict_code(flags: bytes) -> int:
    compact = flags.replace(b" ", b"").replace(b"\n", b"")
    if compact in (b"[]", b"null") or b"null" in compact:
        code = UNKNOWN
    else:
        code = RIGHT if b"false" not in compact and b"true" in compact else WRONG
    if len(_VERDICT_CODES) < 64:
        _VERDICT_CODES[flags] = code
    return code


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


def _texts(values: list[Any]) -> list[str]:
    """``_text`` over a column, with the common shapes (plain strings, chat turns) inlined: this runs per example."""
    try:
        return [
            v if v.__class__ is str else "\n".join([f"{t['role']}: {t['prompt']}" for t in v])
            for v in values
        ]
    except (TypeError, KeyError, AttributeError):
        return [_text(v) for v in values]


def _text(value: Any) -> str:
    """Prompts may be chat turns: ``[{"role": "HUMAN", "prompt": "..."}]`` -> ``"HUMAN: ..."`` lines."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        try:
            return "\n".join([f"{turn['role']}: {turn['prompt']}" for turn in value])
        except (TypeError, KeyError):
            pass
        parts = []
        for turn in value:
            if isinstance(turn, dict) and "prompt" in turn:
                parts.append(f"{turn.get('role', '')}: {turn['prompt']}")
            else:
                parts.append(_text(turn))
        return "\n".join(parts)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _load_small(path: Path, display: str) -> Any | None:
    """The decoded file if it is small enough to read whole, else None.

    orjson first (about twice as fast as ``json`` here); on any complaint the stdlib decodes the text with invalid
    UTF-8 replaced by U+FFFD, which either succeeds (the file only had bad bytes) or names the line that is broken.
    """
    if path.stat().st_size > WHOLE_FILE_LIMIT:
        return None
    raw = path.read_bytes()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        raise ResultParseError("empty file", path=display, line=1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        what = "truncated (unexpected end of file)" if exc.pos >= len(text.rstrip()) else exc.msg
        raise ResultParseError(what, path=display, line=exc.lineno) from None
    get_logger(file=display).warning("invalid UTF-8 replaced with U+FFFD")
    return data


def _tail(path: Path, size: int) -> str:
    with path.open("rb") as f:
        f.seek(0, 2)
        length = f.tell()
        f.seek(max(0, length - size))
        return f.read().decode("utf-8", errors="replace")
