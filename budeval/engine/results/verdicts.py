"""Per-example right/wrong from an evaluator's ``details`` in ``results/{model}/{dataset}.json``, one byte each.

Two shapes occur: a dict keyed by example index (``{"type": "GEN", "0": {..., "correct": bool?}}``; OpenCompass's
GEN evaluators often record no verdict at all) and a list (``[{"example_abbr": "<ds>_<i>", "correct": [bool]}]``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from budeval.engine.results.jsonstream import JsonStream
from budeval.engine.results.loading import WHOLE_FILE_LIMIT, load_small
from budeval.errors import ResultParseError

UNKNOWN, WRONG, RIGHT = 0, 1, 2
MARK: tuple[bool | None, ...] = (None, False, True)
DETAILS_SHAPE = re.compile(rb'"details"\s*:\s*([\[{])')
CORRECT_KEY = re.compile(rb'"correct"\s*:\s*(\[[^\]]*\]|true|false|null)')
ABBR_INDEX = re.compile(rb'"example_abbr"\s*:\s*"[^"\\]*?_(\d+)"')
#: Results files up to this size are scanned as raw bytes (no decoding, so no decoder's transient memory).
SCAN_LIMIT = 64 << 20


def read_verdicts(path: Path, display: str) -> bytearray:
    """UNKNOWN, WRONG or RIGHT per example index (empty when the file is absent or records no verdict)."""
    marks = bytearray()
    if not path.is_file():
        return marks

    def put(index: int, value: Any) -> None:
        if not isinstance(value, bool):
            return
        if index >= len(marks):
            marks.extend(bytes(index + 1 - len(marks)))
        marks[index] = RIGHT if value else WRONG

    size = path.stat().st_size
    if size <= SCAN_LIMIT:
        raw = path.read_bytes()
        if b'"correct"' not in raw:
            return marks  # this evaluator records no per-example verdict: nothing to decode
        shape = DETAILS_SHAPE.search(raw)
        if shape is not None and shape.group(1) == b"[":
            _scan_list_verdicts(raw, marks)
            return marks
        del raw
    data = load_small(path, display) if size <= WHOLE_FILE_LIMIT else None
    if data is not None:
        details = data.get("details") if isinstance(data, dict) else None
        if isinstance(details, dict):
            for item_key, item in details.items():
                if item_key.isdigit() and isinstance(item, dict):
                    put(int(item_key), verdict(item.get("correct")))
        elif isinstance(details, list):
            for position, item in enumerate(details):
                if isinstance(item, dict):
                    put(_example_index(item.get("example_abbr"), position), verdict(item.get("correct")))
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
                        put(int(item_key), verdict(item.get("correct")))
            else:  # [{"example_abbr": "<dataset>_<i>", "correct": [bool], ...}, ...]
                for position, _ in enumerate(stream.elements()):
                    item = stream.value()
                    if isinstance(item, dict):
                        put(_example_index(item.get("example_abbr"), position), verdict(item.get("correct")))
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
        index = list(map(int, abbrs))
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


def verdict(value: Any) -> bool | None:
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
