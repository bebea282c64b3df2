"""Limits on JSON documents from outside, checked before parsing: nesting depth (and the size the caller knows).

``json.loads`` recurses once per nesting level: a request of a few thousand ``[`` raises ``RecursionError`` (not a
``ValueError``), which escaped the handlers and dropped connections. :func:`check_depth` answers first, cheaply (no
parse, no recursion): both HTTP servers (the API and the embedded sidecar's publish endpoint) and ``budeval submit``
use it and answer 400 / a rejection.
"""

from __future__ import annotations

import json
import re

#: Nesting deeper than this is refused (settings ``max_json_depth``); a request is about 5 levels deep.
DEFAULT_MAX_DEPTH = 64
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


class TooDeepError(ValueError):
    """The document nests deeper than the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"JSON nested deeper than {limit} levels")


def check_depth(data: bytes | str, limit: int = DEFAULT_MAX_DEPTH) -> None:
    """Raises TooDeepError if ``data`` (JSON text, valid or not) opens more than ``limit`` brackets at once.

    Brackets inside strings do not count. Bytes are read in the encoding ``json.loads`` detects (UTF-8/16/32).
    Linear time; documents with fewer brackets than ``limit`` cost two counts.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if not isinstance(data, str) and json.detect_encoding(raw) not in ("utf-8", "utf-8-sig"):
        # json.loads(bytes) reads UTF-16/32 too; scanned as UTF-8 their bytes pair quotes wrongly (U+4E22 is 22 4E
        # in UTF-16-LE), so count on the text json.loads will see.
        raw = raw.decode(json.detect_encoding(raw), "replace").encode("utf-8", "surrogatepass")
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                raise TooDeepError(limit)
        else:
            depth -= 1
