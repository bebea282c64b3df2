"""``predictions/{model}/{dataset}.json`` to column batches, one file at a time, in this process or a parse worker.

Each entry is ``{"origin_prompt": str | [{"role", "prompt"}], "prediction": ..., "gold": ...}`` keyed by its index.
This runs once per example, so the common shapes (in-order keys, single-turn chat prompts, string values) take paths
that stay in C (itemgetter, map, list equality) and anything unusual falls back to a general, slower path.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from budeval.engine.results.jsonstream import JsonStream
from budeval.engine.results.loading import load_small, warn_replaced
from budeval.engine.results.verdicts import MARK, Verdicts, dataset_verdicts
from budeval.errors import ResultParseError
from budeval.schemas.results import PredictionBatch

STREAM_CHUNK = 2000  # examples per chunk when a large file is streamed
_FIELDS = itemgetter("origin_prompt", "prediction", "gold")
_MARK_OF = MARK.__getitem__
_KEYS: list[str] = []  # "0", "1", ...: grown on demand to recognise in-order keys with one list comparison
#: ``predictions.example_index`` and the example sets' elements are UInt32.
MAX_EXAMPLE_INDEX = (1 << 32) - 1
_KEYS_CAP = 1 << 17  # beyond this the keys are converted instead (a process-wide cache must stay small)


def _in_order_keys(start: int, n: int) -> list[str]:
    if len(_KEYS) < start + n:
        _KEYS.extend(map(str, range(len(_KEYS), start + n)))
    return _KEYS[start : start + n]


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a file is decoded into columns.

    Decoding allocates hundreds of thousands of containers that cannot form cycles; each allocation burst triggers
    collections that walk all of them again (measured: ~15% of parse time). Restored only if it was on, so a caller
    that turned it off keeps it off.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def file_batches(
    model: str,
    dataset: str,
    path: Path,
    display: str,
    verdicts: Verdicts,
    offset: int = 0,
    warn: Callable[[str, int], None] = warn_replaced,
) -> Iterator[PredictionBatch]:
    """The file's rows (indices shifted by ``offset``, for shards); a small file is one batch, a large one streams."""
    batch: PredictionBatch | None = None
    with no_cyclic_gc():  # not held across the yield: the caller's own work runs with the collector as it was
        data = load_small(path, display, warn)
        if data is not None:
            if not isinstance(data, dict):
                raise ResultParseError("expected a JSON object of examples", path=display, line=1)
            batch = build(model, dataset, list(data), list(data.values()), verdicts, offset, display)
            data = None  # the decoded objects go now; the batch holds the strings it needs
    if batch is not None:
        yield batch
        return
    done = 0  # members already handed out by the fast path, skipped if the general one must take over
    try:
        for part in _indented_parts(path):
            with no_cyclic_gc():
                batch = build(model, dataset, list(part), list(part.values()), verdicts, offset, display)
                part = {}
            done += len(batch)
            yield batch
        return
    except _Unsplittable:
        pass
    with JsonStream(path, display) as stream:
        if stream.start() != "{":
            raise ResultParseError("expected a JSON object of examples", path=display, line=1)
        keys: list[str] = []
        values: list[Any] = []
        for key, _ in stream.items():
            if done:
                stream.skip()
                done -= 1
                continue
            keys.append(key)
            values.append(stream.value())
            if len(keys) >= STREAM_CHUNK:
                yield build(model, dataset, keys, values, verdicts, offset, display)
                keys, values = [], []
        stream.finish()
        if keys:
            yield build(model, dataset, keys, values, verdicts, offset, display)
        if stream.replaced:
            warn(display, stream.replacements)


class _Unsplittable(Exception):
    """The fast path cannot go on (another layout, bad bytes, broken JSON): the general streamer takes over."""


_MEMBER_CUT = b',\n    "'  # between two top-level members of a file json.dump wrote with indent=4
INDENTED_CHUNK = 1 << 20  # orjson needs ~14x its input transiently (measured): 1 MiB pieces keep that small
MAX_PENDING = 64 << 20


def _indented_parts(path: Path) -> Iterator[dict[str, Any]]:
    """A large predictions file as dicts of consecutive members, each decoded by orjson in one call.

    OpenCompass writes predictions with ``json.dump(..., indent=4)``: a top-level member starts on a new line indented
    by exactly four spaces, and JSON strings cannot hold a raw newline, so ``,\n    "`` occurs only between two
    top-level members. Cutting there gives valid JSON objects to decode at C speed (about 2x ``JsonStream``).
    Anything else (another indent, invalid UTF-8, a broken file, one member over 64 MiB) raises _Unsplittable; the
    caller then streams the rest with ``JsonStream``, which also names the line of a real error.
    """
    with path.open("rb") as f:
        pending = f.read(INDENTED_CHUNK)
        if not pending.lstrip().startswith(b'{\n    "'):
            raise _Unsplittable
        pending = pending.lstrip()[1:]  # without the opening brace: every piece is wrapped in braces below
        while True:
            more = f.read(INDENTED_CHUNK)
            cut = pending.rfind(_MEMBER_CUT) if more else -1
            if more and cut < 0:
                if len(pending) > MAX_PENDING:
                    raise _Unsplittable
                pending += more
                continue
            piece, pending = (pending[:cut], pending[cut + 1 :] + more) if more else (pending, b"")
            try:
                with no_cyclic_gc():
                    part = orjson.loads(b"{" + piece + (b"}" if more else b""))
            except orjson.JSONDecodeError:
                raise _Unsplittable from None
            if not isinstance(part, dict):
                raise _Unsplittable
            yield part
            if not more:
                return


def build(
    model: str,
    dataset: str,
    keys: list[str],
    entries: list[Any],
    verdicts: Verdicts,
    offset: int,
    display: str,
) -> PredictionBatch:
    """One batch of rows from ``keys`` (prediction keys, strings) and their ``entries`` (decoded examples).

    ``offset`` shifts keys (a shard's keys start at 0); verdicts, scores, example index and replica are looked up by
    the shifted key (see :class:`~budeval.engine.results.verdicts.Verdicts`). Raises ResultParseError for a key that
    is not an index, an example index beyond
    :data:`MAX_EXAMPLE_INDEX` (UInt32 in the store) or an example that is not a JSON object.
    """
    n = len(keys)
    if not n:
        return PredictionBatch()
    first = keys[0]
    start = int(first) if first.isdecimal() else -1
    if start >= 0 and start + n <= _KEYS_CAP and keys == _in_order_keys(start, n):
        local: list[int] = []  # not needed: the keys are start, start + 1, ...
        contiguous = True
    else:
        if not all(map(str.isdecimal, keys)):
            bad = next(k for k in keys if not k.isdecimal())
            raise ResultParseError(f"example key {bad[:40]!r} is not an index", path=display)
        local = list(map(int, keys))
        start = local[0]
        contiguous = local == list(range(start, start + n))
    marks = verdicts.marks
    known = len(marks)
    if contiguous:
        lo = start + offset
        index = list(range(lo, lo + n))
        if not known:
            correct: list[bool | None] = [None] * n
        elif lo + n <= known:
            correct = list(map(_MARK_OF, marks[lo : lo + n]))
        else:
            correct = list(map(_MARK_OF, marks[lo:known])) if lo < known else []
            correct += [None] * (n - len(correct))
    else:
        index = [i + offset for i in local]
        correct = [MARK[marks[i]] if i < known else None for i in index]
    try:
        prompts, predictions, golds = zip(*map(_FIELDS, entries), strict=True)
    except (KeyError, TypeError):  # a field is absent (datasets without gold) or an entry is not an object
        if not all(type(e) is dict for e in entries):
            raise ResultParseError("an example is not a JSON object", path=display) from None
        prompts = tuple(e.get("origin_prompt") for e in entries)
        predictions = tuple(e.get("prediction") for e in entries)
        golds = tuple(e.get("gold") for e in entries)
    scores = verdicts.scores
    score: list[float | None] = [None] * n if scores is None else [scores.get(k) for k in index]
    answers = verdicts.judge_answers
    judge_answer: list[str] = [] if answers is None else [answers.get(k, "") for k in index]
    if verdicts.examples:  # replicas: key r * N + i is replica r of example i
        examples = verdicts.examples
        replica = [k // examples for k in index]
        index = [k % examples for k in index]
    else:
        replica = [0] * n
    if (index[-1] if contiguous and not verdicts.examples else max(index)) > MAX_EXAMPLE_INDEX:
        raise ResultParseError(  # the store's column and the example sets' elements are UInt32
            f"example key {keys[index.index(max(index))]} is beyond the largest example index {MAX_EXAMPLE_INDEX}",
            path=display)
    return PredictionBatch(
        model=[model] * n,
        dataset=[dataset] * n,
        example_index=index,
        replica=replica,
        prompt=prompt_texts(prompts),
        prediction=plain_texts(predictions),
        gold=plain_texts(golds),
        correct=correct,
        score=score,
        judge_answer=judge_answer,
    )


def prompt_texts(values: tuple[Any, ...]) -> list[str]:
    """Chat prompts (lists of turns) become ``ROLE: text`` lines joined by newlines; strings stay as they are."""
    try:
        return [
            v
            if v.__class__ is str
            else (
                f"{v[0]['role']}: {v[0]['prompt']}"
                if len(v) == 1
                else "\n".join([f"{t['role']}: {t['prompt']}" for t in v])
            )
            for v in values
        ]
    except (TypeError, KeyError, AttributeError):
        return [prompt_text(v) for v in values]


def prompt_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for turn in value:
            if isinstance(turn, dict) and "prompt" in turn:
                parts.append(f"{turn.get('role', '')}: {plain_text(turn['prompt'])}")
            else:
                parts.append(plain_text(turn))
        return "\n".join(parts)
    return plain_text(value)


def plain_texts(values: tuple[Any, ...]) -> list[str]:
    return [v if v.__class__ is str else plain_text(v) for v in values]


def plain_text(value: Any) -> str:
    """Predictions and golds are usually strings; None is empty, anything else (lists, numbers) JSON text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# -- parse worker ------------------------------------------------------------------------------------------------------
#: model, dataset, predictions path, its display, results path, its display, replicas ``n`` from the run's config
WorkerTask = tuple[str, str, str, str, str, str, int]
WorkerResult = tuple[PredictionBatch | None, list[tuple[str, int]], ResultParseError | None]


def worker_parse(task: WorkerTask) -> WorkerResult:
    """Run in a parse worker process: one small (single-file) predictions file with its verdicts, as one batch.

    Returns (batch, warnings, error) instead of raising or logging: the parent re-raises the typed error (it pickles
    with its file and line) and logs the warnings under its own logging setup.
    """
    model, dataset, path, display, results, results_display, n = task
    notes: list[tuple[str, int]] = []
    try:
        verdicts = dataset_verdicts(Path(results), results_display, [Path(path)], n)
        batch = PredictionBatch()
        for part in file_batches(model, dataset, Path(path), display, verdicts, 0, lambda d, c: notes.append((d, c))):
            batch = part if not len(batch) else _concat(batch, part)
        return batch, notes, None
    except ResultParseError as exc:
        return None, notes, exc


def _concat(a: PredictionBatch, b: PredictionBatch) -> PredictionBatch:
    for name in PredictionBatch.__slots__:
        getattr(a, name).extend(getattr(b, name))
    return a


# -- large files in parse workers: byte ranges between member cuts ----------------------------------------------------
RangeTask = tuple[str, str, str, str, str, str, int, int, int, bool, int]  # WorkerTask, start, end, last, line


def member_ranges(path: Path, display: str) -> Iterator[tuple[int, int, bool, int]]:
    """``(start, end, last, line)`` byte ranges of about INDENTED_CHUNK, each holding whole top-level members of an
    ``indent=4`` predictions file (see ``_indented_parts``); nothing if the file is laid out otherwise. Only reads
    and searches bytes: the decoding happens in a worker (``worker_parse_range``)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(7) != b'{\n    "':
            return
        f.seek(0)
        buf, base, pos, line = b"", 0, 1, 1  # buf holds the file from offset base; pos: start of the next range
        while True:
            more = f.read(INDENTED_CHUNK)
            if not more:
                yield pos, size, True, line
                return
            buf += more
            cut = buf.rfind(_MEMBER_CUT, pos - base)
            if cut < 0:
                if len(buf) - (pos - base) > MAX_PENDING:
                    raise ResultParseError("a member larger than 64 MiB", path=display, line=line)
                continue
            yield pos, base + cut, False, line
            line += buf.count(b"\n", pos - base, cut + 1)
            pos = base + cut + 1
            buf, base = buf[cut + 1 :], pos


_VERDICTS: dict[str, Verdicts] = {}  # the worker's verdicts of the dataset it is reading ranges of


def worker_parse_range(task: RangeTask) -> WorkerResult:
    """Run in a parse worker: one byte range of a large predictions file as one batch (see ``worker_parse``)."""
    model, dataset, path, display, results, results_display, n, start, end, last, line = task
    notes: list[tuple[str, int]] = []
    try:
        if results not in _VERDICTS:
            _VERDICTS.clear()
            _VERDICTS[results] = dataset_verdicts(Path(results), results_display, [Path(path)], n)
        with open(path, "rb") as f:
            f.seek(start)
            raw = b"{" + f.read(end - start) + (b"" if last else b"}")
        with no_cyclic_gc():
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                text = raw.decode("utf-8", errors="replace")
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as exc:
                    cut_off = last and exc.pos >= len(text.rstrip())
                    what = "truncated (unexpected end of file)" if cut_off else exc.msg
                    raise ResultParseError(what, path=display, line=line + exc.lineno - 1) from None
                if replaced := text.count("\ufffd") - raw.count("\ufffd".encode()):
                    notes.append((display, replaced))
            del raw
            if not isinstance(data, dict):
                raise ResultParseError("expected a JSON object of examples", path=display, line=line)
            return build(model, dataset, list(data), list(data.values()), _VERDICTS[results], 0, display), notes, None
    except ResultParseError as exc:
        return None, notes, exc
