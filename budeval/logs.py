"""structlog configured for JSON lines on stderr; bind ``eval_id`` (and ``run_id``) wherever one is known."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the moment of the write, not the stream of the first configure:
    a process that swaps stderr later (a test's capture, a daemon redirecting it) never writes to a closed file."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "INFO") -> None:
    global _configured
    if _configured:
        return
    # The handler filters too: a library that sets its own logger's level (clickhouse-connect sets urllib3's to
    # WARNING) would otherwise print below ``level`` through the root handler.
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setLevel(level)
    logging.basicConfig(handlers=[handler], level=level, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    _configured = True


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("budeval").bind(**bound)

