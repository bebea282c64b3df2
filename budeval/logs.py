"""Logging: one JSON object per line on stderr, from budeval's structlog loggers and every standard-library logger.

Every record -- budeval's own (structlog), the Dapr SDK's (``WorkflowRuntime``, ``DaprWorkflowClient``,
``durabletask-worker``/``-client``), uvicorn's, grpc's, urllib3's -- goes through the one root handler, whose
:class:`structlog.stdlib.ProcessorFormatter` renders it as JSON (``timestamp``, ``level``, ``logger``, ``event``,
bound ids) with credentials masked (:func:`budeval.masking.redact` over the rendered line) and written in one
``write`` (so threads never interleave parts of lines). Bind ids where they are known: ``eval_id``, ``run`` (a run
id), ``job`` (a Kubernetes Job name) -- with :func:`get_logger` or :func:`bind_ids` (context variables, for the
duration of a block).

The Dapr SDK gives each of its loggers a handler of its own (plain text) *and* lets records propagate to the root:
every SDK line was printed twice, once not JSON. :func:`sdk_logger_options` hands the SDK a handler that drops
records (they still propagate to the root handler, once), and :func:`configure` removes handlers the SDK already
attached.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

import structlog

from budeval.masking import redact

_configured = False
#: Loggers that attach a handler of their own (the Dapr SDK's; its durabletask copy appends one per client).
SDK_LOGGERS = ("WorkflowRuntime", "DaprWorkflowClient", "durabletask-worker", "durabletask-client")


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the moment of the write, not the stream of the first configure:
    a process that swaps stderr later (a test's capture, a daemon redirecting it) never writes to a closed file."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _OneWriteHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes a record and its newline in one call (the stdlib writes them in one, too, but
    says nothing of it; this keeps the guarantee explicit) and never raises into the caller."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            self.stream.write(line + "\n")
            self.flush()
        except Exception:
            self.handleError(record)


#: A key whose value is a credential whatever it looks like (``token=``, ``api_key=``, ``s3_secret_key=``).
_SECRET_KEY = re.compile(
    r"(?i)(?:^|_)(?:api_?key|key|secret|token|password|passwd|pwd|credentials?|auth|authorization)$"
)


def _mask(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """Mask credentials before rendering: the value of a credential-like key whole, and what looks like one in every
    other string value, the message included (:func:`budeval.masking.redact`)."""
    return {
        k: "***" if _SECRET_KEY.search(k) and v else redact(v) if isinstance(v, str) else v
        for k, v in event_dict.items()
    }


def _drop_color_message(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event_dict.pop("color_message", None)  # uvicorn's duplicate of the message with terminal colours
    return event_dict


def _formatter() -> structlog.stdlib.ProcessorFormatter:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_color_message,
            structlog.processors.format_exc_info,
            _mask,
            structlog.processors.JSONRenderer(default=str),
        ],
    )


def release_sdk_handlers() -> None:
    """Remove the handlers the Dapr SDK attached to its loggers (records still reach the root handler once)."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


def sdk_logger_options() -> Any:
    """``LoggerOptions`` for ``WorkflowRuntime`` / ``DaprWorkflowClient``: a handler that drops every record, so
    the SDK's lines are written once, as JSON, by the root handler."""
    from dapr.ext.workflow.logger import LoggerOptions

    return LoggerOptions(log_level=logging.getLogger().level or logging.INFO, log_handler=logging.NullHandler())


def configure(level: str = "INFO") -> None:
    """Route every logger to one JSON-lines handler on stderr at ``level`` (idempotent)."""
    global _configured
    if _configured:
        release_sdk_handlers()
        return
    handler = _OneWriteHandler(_CurrentStderr())
    # The handler filters too: a library that sets its own logger's level (clickhouse-connect sets urllib3's to
    # WARNING) would otherwise print below ``level`` through the root handler.
    handler.setLevel(level)
    handler.setFormatter(_formatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # ``warnings.warn`` lines become records too
    release_sdk_handlers()
    _configured = True


def _route_structlog_to_stdlib() -> None:
    """structlog's loggers hand their event dicts to the stdlib logger ``budeval``, rendered by the root handler.
    Done at import: loggers bound at module level (before :func:`configure`) take this configuration too."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


_route_structlog_to_stdlib()


def get_logger(**bound: Any) -> Any:
    """budeval's logger with ``bound`` key/values on every line (``eval_id=``, ``run=``, ``job=``)."""
    return structlog.get_logger("budeval").bind(**bound)


@contextlib.contextmanager
def bind_ids(**ids: Any) -> Iterator[None]:
    """Bind ids (``eval_id``, ``run``, ``job``; None values skipped) to every line logged in this block by this
    thread or task -- budeval's lines and the libraries' alike."""
    values = {k: v for k, v in ids.items() if v is not None}
    with structlog.contextvars.bound_contextvars(**values):
        yield
