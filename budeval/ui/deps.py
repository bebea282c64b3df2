"""What the web UI needs from the service that mounts it: the store, the API token and two service actions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: ``status(eval_id)``: the body of ``GET /evals/{id}`` (status, workflow, evaluation row, scores, failures), None
#: for an unknown evaluation, ``{"error": ..., "message": ...}`` when the workflow engine cannot be asked.
StatusFn = Callable[[str], dict[str, Any] | None]
#: ``cancel(eval_id)``: ``(http_status, body)`` of ``DELETE /evals/{id}``.
CancelFn = Callable[[str], tuple[int, dict[str, Any]]]


@dataclass(frozen=True)
class UiDeps:
    """``store``: a ClickHouse store (or a wrapper forwarding its reads); ``api_token``: the service's bearer token,
    which the login form asks for (None: the service runs without one, and so does the UI)."""

    store: Any
    api_token: str | None
    status: StatusFn
    cancel: CancelFn
