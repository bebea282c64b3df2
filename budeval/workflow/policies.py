"""Retry policies as settings: transient failures retry with backoff, terminal ones fail at once.

Dapr's public ``RetryPolicy`` has no way to name non-retryable errors, but the durabletask policy underneath does
(``non_retryable_error_types``, matched against the failing exception's class name). Every subclass of
:class:`budeval.errors.TerminalError` is listed there, so an activity that raises one is never retried.
"""

from __future__ import annotations

from datetime import timedelta

import dapr.ext.workflow as wf
from dapr.ext.workflow._durabletask import task as _dt_task  # private: the only home of non_retryable_error_types

from budeval import errors


def _terminal_error_names() -> list[str]:
    names: list[str] = []
    pending: list[type[BaseException]] = [errors.TerminalError]
    while pending:
        cls = pending.pop()
        names.append(cls.__name__)
        pending.extend(cls.__subclasses__())
    # Programming errors are not transient either: retrying a TypeError only delays the failure.
    return sorted({*names, "TypeError", "KeyError", "AttributeError", "ValueError", "NonRetryableError"})


class BackoffPolicy(wf.RetryPolicy):  # type: ignore[misc]
    """A :class:`dapr.ext.workflow.RetryPolicy` that never retries terminal errors."""

    def __init__(
        self,
        *,
        first: timedelta,
        attempts: int,
        coefficient: float = 2.0,
        maximum: timedelta | None = None,
    ) -> None:
        super().__init__(
            first_retry_interval=first,
            max_number_of_attempts=attempts,
            backoff_coefficient=coefficient,
            max_retry_interval=maximum,
        )
        self._obj = _dt_task.RetryPolicy(
            first_retry_interval=first,
            max_number_of_attempts=attempts,
            backoff_coefficient=coefficient,
            max_retry_interval=maximum,
            non_retryable_error_types=list(_terminal_error_names()),
        )


def transient(window_s: float | None = None, first_s: float = 1.0, max_s: float = 60.0) -> BackoffPolicy:
    """The activities' policy: backoff ``first_s`` (1), doubling up to ``max_s`` (60 s), then every ``max_s``, for at
    least ``window_s`` seconds (settings ``activity_retry_first_s``, ``activity_retry_max_s``,
    ``activity_retry_window_s``; copied into the workflow's input at intake, so a replay sees the same policy).

    ``None`` keeps the policy histories recorded before the window was a setting (8 attempts, about 2 minutes of
    waiting); ``activity_retry_window_s`` (default 30 min) is what new evaluations get, so an archive, store, broker
    or API server outage shorter than that delays an evaluation instead of failing it.
    """
    first, maximum = timedelta(seconds=first_s), timedelta(seconds=max(max_s, first_s))
    if window_s is None:
        return BackoffPolicy(first=first, attempts=8, coefficient=2.0, maximum=maximum)
    waited, attempts, delay = 0.0, 1, first_s
    while waited < window_s:
        waited += delay
        attempts += 1
        delay = min(delay * 2.0, max_s)
    return BackoffPolicy(first=first, attempts=attempts, coefficient=2.0, maximum=maximum)


#: Every activity: each holds a step with a store, archive, backend API or broker call (validation and rendering are
#: pure and report their failures as data, so a retry only ever repeats I/O). A server restarting or a network blip
#: heals within minutes; terminal errors are never retried.
TRANSIENT = transient(None)
