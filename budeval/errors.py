"""The one error hierarchy of budeval: every adapter translates its vendor's errors into these.

    BudevalError
    ├── TerminalError                 fail now, never retry (bad input, broken files, a run that failed)
    │   ├── ValidationError           a request or setting that does not satisfy the schema
    │   ├── ConfigError               a setting (flag, variable, settings file) that is not valid
    │   ├── UnsafeIdError             an id that is not a DNS label (path traversal, upper case, too long)
    │   ├── PolicyError               a request reaching past what the operator allows (credential, host, path)
    │   ├── ResultParseError          an OpenCompass output file is missing, empty, truncated or garbled
    │   │   ├── NoSummaryError        the newest run folder has nothing to score (an aborted run)
    │   │   └── OutsideRunError       an output path that resolves outside the run folder (refused, not read)
    │   ├── RunFailedError            a job ended without scores (crash, OOM, deadline, task errors)
    │   ├── ConflictError             an object exists that is not ours (e.g. a Job with foreign labels)
    │   ├── NotFoundError             an evaluation, run or object that does not exist
    │   ├── GateRefusedError          a gate that cannot compare: no shared example, or the example sets differ
    │   ├── StoreQueryError           ClickHouse refused the statement itself (syntax, unknown table/column, types)
    │   └── SchemaVersionError        the store holds a newer schema than this code knows
    └── TransientError                retry with backoff (network, 5xx, 429, a server starting up)
        ├── StoreUnavailableError     ClickHouse cannot be reached or answered 5xx
        ├── ArchiveUnavailableError   the S3 endpoint cannot be reached or answered 5xx
        ├── BackendUnavailableError   the Kubernetes API or the local runner cannot be reached
        └── SidecarUnavailableError   the embedded sidecar's process did not start (or report where it listens)

Messages are cut to ``MAX_MESSAGE`` characters so that no large payload (or secret inside one) reaches a log.
"""

from __future__ import annotations

MAX_MESSAGE = 500


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


class BudevalError(Exception):
    """Base of every error budeval raises on purpose."""

    #: A stable machine-readable class name for events and statuses (e.g. ``parse_error``).
    reason: str = "error"
    transient: bool = False

    def __init__(self, message: str) -> None:
        self.message = _short(message)
        super().__init__(self.message)


class TerminalError(BudevalError):
    """Retrying cannot help."""

    reason = "terminal"


class TransientError(BudevalError):
    """Retrying later may help."""

    reason = "transient"
    transient = True


class ValidationError(TerminalError):
    reason = "invalid_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message if field is None else f"{field}: {message}")


class ConfigError(ValidationError):
    """A setting that is not valid (budeval/config): the message names the setting and its variable, never the
    value (it may be a secret)."""

    reason = "invalid_setting"

    def __init__(self, message: str, variable: str | None = None) -> None:
        self.variable = variable
        super().__init__(message)


class UnsafeIdError(ValidationError):
    reason = "unsafe_id"


class PolicyError(ValidationError):
    """A well-formed request that asks for something the operator did not allow (docs/security.md)."""

    reason = "forbidden"


class ResultParseError(TerminalError):
    """A result file cannot be read; names the file and, where known, the line."""

    reason = "parse_error"

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = "" if path is None else f"{path}" + ("" if line is None else f":{line}")
        super().__init__(f"{where}: {message}" if where else message)


class NoSummaryError(ResultParseError):
    """The run folder holds nothing to score: no timestamp folder, or the newest one has neither a summary nor
    results files (the run aborted or never ran)."""

    reason = "no_summary"


class OutsideRunError(ResultParseError):
    """A path OpenCompass would have written (from a model or dataset abbr) resolves outside the run folder; the
    reader refuses to open it. Reported on that (model, dataset), never with the file's content."""

    reason = "outside_run"


class RunFailedError(TerminalError):
    reason = "run_failed"

    def __init__(self, message: str, reason_class: str = "run_failed", log_excerpt: str = "") -> None:
        from budeval.masking import redact

        self.reason_class = reason_class
        self.log_excerpt = redact(log_excerpt)
        super().__init__(message)


class ConflictError(TerminalError):
    reason = "conflict"


class NotFoundError(TerminalError):
    reason = "not_found"


class GateRefusedError(TerminalError):
    """The regression gate refuses to compare two evaluations: they share no example with a verdict or score, or
    their example sets differ (another dataset version). ``overlap``: per dataset the paired count and the examples
    only in the baseline / only in the candidate (docs/decisions.md)."""

    reason = "gate_refused"

    def __init__(self, message: str, overlap: list[dict[str, object]] | None = None) -> None:
        self.overlap = list(overlap or [])
        super().__init__(message)


class StoreQueryError(TerminalError):
    """ClickHouse refused the statement itself (an error code that no retry can change: syntax, unknown table or
    column, type mismatch, access denied); see ``budeval.storage.clickhouse.TERMINAL_CODES``."""

    reason = "store_query"


class SchemaVersionError(TerminalError):
    """A store holds a newer schema than this code knows: ClickHouse (``schema_migrations``) or the embedded
    sidecar's SQLite file (``PRAGMA user_version``); refused before anything in it is written."""

    reason = "schema_version"


class StoreUnavailableError(TransientError):
    reason = "store_unavailable"


class ArchiveUnavailableError(TransientError):
    reason = "archive_unavailable"


class BackendUnavailableError(TransientError):
    reason = "backend_unavailable"


class SidecarUnavailableError(TransientError):
    reason = "sidecar_unavailable"


__all__ = [
    "ArchiveUnavailableError",
    "BackendUnavailableError",
    "BudevalError",
    "ConfigError",
    "ConflictError",
    "GateRefusedError",
    "NoSummaryError",
    "NotFoundError",
    "PolicyError",
    "ResultParseError",
    "RunFailedError",
    "SchemaVersionError",
    "SidecarUnavailableError",
    "StoreUnavailableError",
    "TerminalError",
    "TransientError",
    "UnsafeIdError",
    "ValidationError",
]
