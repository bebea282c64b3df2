"""The one masking function for text that leaves a run: log excerpts and messages in events, history and tables.

A run's output may print what it was given (a key in a traceback, a URL with a password, an ``Authorization``
header). Every excerpt producer goes through :func:`redact`: it is applied where a
:class:`~budeval.backends.base.RunState` is made (any backend) and where a ``RunFailedError`` carries an excerpt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PATTERNS = (
    # OpenAI-style keys and bearer tokens
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}|(?i:\bbearer\s+)\S+"),
    # name=value / name: value / "name": "value" for credential-like names
    re.compile(r"(?i)\b(authorization|api[_-]?key|bearer|token|password|passwd|secret)(\"?\s*[:=]\s*\"?|\s+)"
               r"([^\s\"',]+)"),
    # user:password@ in URLs
    re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]+):([^\s@/]+)@"),
)


def redact(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with what looks like a credential masked (``sk-***``, ``Bearer ***``, ``password=***``,
    ``scheme://user:***@``), and every value of ``known`` (secrets the caller holds, 6+ characters) replaced."""
    for value in known:
        if value and len(value) >= 6:
            text = text.replace(value, "***")
    text = _PATTERNS[0].sub(lambda m: "Bearer ***" if m.group(0).lower().startswith("bearer") else "sk-***", text)
    text = _PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return _PATTERNS[2].sub(lambda m: f"{m.group(1)}:***@", text)
