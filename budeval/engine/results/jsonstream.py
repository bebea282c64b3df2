"""Streams the members of a (possibly huge) JSON object or array file with bounded memory.

OpenCompass writes ``predictions/*.json`` and ``results/*.json`` as one top-level object (``{"0": {...}, ...}``)
that can reach gigabytes. Loading it whole would tie memory to the dataset's size, so this reader walks the structure
itself and
hands each member value to the C-accelerated ``json`` scanner (``raw_decode``) on a sliding text window: memory stays at
about one chunk plus the largest single member. Undecodable bytes become U+FFFD (``replaced`` says whether any did) so
one bad byte in a model's output does not cost the whole file; broken JSON raises ``ResultParseError`` with the line.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from budeval.errors import ResultParseError

CHUNK = 1 << 22  # 4 MiB of text per read: large enough that re-decoding a value cut at the window edge is rare
_WS = " \t\n\r"
MAX_MEMBER = 64 << 20  # one member (one example) larger than this is treated as garbage, bounding memory


class JsonStream:
    """A cursor over one JSON file; ``members()`` / ``items()`` descend one container level at a time."""

    def __init__(self, path: Path, display: str | None = None, chunk: int = CHUNK) -> None:
        self.path = path
        self.display = display or str(path)
        self._chunk = chunk
        self._file: BinaryIO = path.open("rb")
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._lines_before = 1  # line number of self._buf[0]
        self.replaced = False
        self.replacements = 0  # U+FFFD in the decoded text (invalid bytes, plus any the file itself held)
        self._scan = json.JSONDecoder().raw_decode

    def __enter__(self) -> JsonStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    # -- low level -------------------------------------------------------------------------------------------------
    def _fill(self) -> bool:
        """Read one more chunk and drop what was consumed; False (buffer untouched) at end of file."""
        if self._eof:
            return False
        raw = self._file.read(self._chunk)
        text = self._decoder.decode(raw, final=not raw)
        if not raw:
            self._eof = True
            if not text:
                return False
        if "\ufffd" in text:
            self.replaced = True
            self.replacements += text.count("\ufffd")
        if self._pos:
            self._lines_before += self._buf.count("\n", 0, self._pos)
            self._buf = self._buf[self._pos :]
            self._pos = 0
        self._buf += text
        return True

    def _line(self, pos: int | None = None) -> int:
        return self._lines_before + self._buf.count("\n", 0, self._pos if pos is None else pos)

    def _error(self, what: str, pos: int | None = None) -> ResultParseError:
        return ResultParseError(what, path=self.display, line=self._line(pos))

    def _peek(self) -> str:
        """Next non-blank character (not consumed); '' at end of file."""
        while True:
            buf, pos = self._buf, self._pos
            n = len(buf)
            while pos < n and buf[pos] in _WS:
                pos += 1
            self._pos = pos
            if pos < n:
                return buf[pos]
            if not self._fill():
                return ""

    def _expect(self, chars: str) -> str:
        ch = self._peek()
        if not ch:
            raise self._error("truncated (unexpected end of file)")
        if ch not in chars:
            raise self._error(f"expected {' or '.join(repr(c) for c in chars)}, found {ch!r}")
        self._pos += 1
        return ch

    def value(self) -> Any:
        """Decode the next complete value (a member), reading more text while it is cut at the window's edge."""
        self._peek()
        while True:
            try:
                obj, end = self._scan(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                if self._cut_at_edge(exc) and len(self._buf) - self._pos < MAX_MEMBER and self._fill():
                    continue
                if self._cut_at_edge(exc):
                    what = "truncated (unexpected end of file)" if self._eof else "a member larger than 64 MiB"
                    raise self._error(what, min(exc.pos, len(self._buf))) from None
                raise self._error(exc.msg, exc.pos) from None
            if len(self._buf) - end < 32 and not self._eof and self._fill():
                continue  # a number near the window's edge ("25" of "25.0") may continue in the next chunk
            self._pos = end
            return obj

    def _cut_at_edge(self, exc: json.JSONDecodeError) -> bool:
        # The scanner reports a value cut by the window as an error at (or, for strings, starting before) its end.
        return exc.msg.startswith("Unterminated string") or exc.pos >= len(self._buf.rstrip()) - 6

    # -- structure ---------------------------------------------------------------------------------------------------
    def start(self) -> str:
        """Consume the opening bracket of a container; returns '{' or '['."""
        if not self._peek():
            raise self._error("empty file")
        return self._expect("{[")

    def items(self) -> Iterator[tuple[str, None]]:
        """After '{': yield each key; the caller must then consume the value (``value()``, ``skip()`` or descend)."""
        if self._peek() == "}":
            self._pos += 1
            return
        while True:
            key = self.value()
            if not isinstance(key, str):
                raise self._error("object key is not a string")
            self._expect(":")
            yield key, None
            if self._expect(",}") == "}":
                return

    def elements(self) -> Iterator[None]:
        """After '[': yield once per element; the caller consumes it."""
        if self._peek() == "]":
            self._pos += 1
            return
        while True:
            yield None
            if self._expect(",]") == "]":
                return

    def skip(self) -> None:
        self.value()

    def finish(self) -> None:
        """Nothing but blanks may follow the top-level value."""
        ch = self._peek()
        if ch:
            raise self._error(f"unexpected data after the end of the JSON value: {ch!r}")


def iter_object(path: Path, display: str | None = None) -> Iterator[tuple[str, Any]]:
    """(key, value) for each member of a top-level JSON object, streamed."""
    with JsonStream(path, display) as stream:
        if stream.start() != "{":
            raise stream._error("expected a JSON object at the top level")
        for key, _ in stream.items():
            yield key, stream.value()
        stream.finish()
