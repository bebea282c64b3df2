"""Whole-file JSON decoding for files small enough to hold: orjson first, the stdlib for exact error lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from budeval.errors import ResultParseError
from budeval.logs import get_logger

#: Files up to this size are decoded whole (fast, C); larger ones are streamed (memory bounded by this, not the file).
#: orjson needs about 14x its input transiently (measured: 16 MiB -> 217 MB peak, 4 MiB -> 54 MB), hence 4 MiB.
WHOLE_FILE_LIMIT = 4 << 20


def warn_replaced(display: str, count: int) -> None:
    get_logger(file=display).warning("invalid UTF-8 replaced with U+FFFD", replacement_chars=count)


def load_small(path: Path, display: str, warn: Callable[[str, int], None] = warn_replaced) -> Any | None:
    """The decoded file if it is small enough to read whole, else None.

    orjson first (about twice as fast as ``json`` here); on any complaint the stdlib decodes the text with invalid
    UTF-8 replaced by U+FFFD, which either succeeds (the file only had bad bytes: ``warn`` is told how many were
    replaced) or names the line that is broken.
    """
    if path.stat().st_size > WHOLE_FILE_LIMIT:
        return None
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a byte-order mark (an editor's re-save) is not content
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
    replaced = text.count("\ufffd") - raw.count("\ufffd".encode())
    if replaced:  # orjson may also have refused what the stdlib accepts (NaN), which is no loss
        warn(display, replaced)
    return data
