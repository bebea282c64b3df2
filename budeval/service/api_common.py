"""What every route module of the HTTP API shares: the service's dependencies, the error answer, body and id checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from budeval.backends.base import JobBackend
from budeval.config import Settings
from budeval.errors import UnsafeIdError
from budeval.events.publisher import EventPublisher
from budeval.policy.credentials import EndpointPolicy
from budeval.schemas.ids import check_dns_label
from budeval.service.admission import WorkflowClient
from budeval.service.auth import Auth
from budeval.service.intake import MAX_REQUEST_BYTES
from budeval.service.metrics import Metrics

#: Bodies are read up to this size; anything longer is rejected unread (the intake limit applies below it).
READ_LIMIT = MAX_REQUEST_BYTES + 1


@dataclass
class ServiceDeps:
    settings: Settings
    workflows: WorkflowClient
    store: Any  # a ResultStore plus the store's queries (leaderboard, compare, flips); serialised by the caller
    backend: JobBackend
    publisher: EventPublisher
    suites: Mapping[str, list[str]]
    auth: Auth
    metrics: Metrics = field(default_factory=Metrics)
    #: The sidecar's HTTP base URL (``http://127.0.0.1:3500``) for readiness; None skips that check.
    sidecar_http_url: str | None = None
    #: What endpoint requests may reach; None: the local registry of the settings (budeval/policy/credentials.py).
    endpoints: EndpointPolicy | None = None
    #: The live progress monitor (budeval/service/progress.py); None: ``GET /evals/{id}`` reads progress alone.
    progress: Any = None


class ApiError(Exception):
    """Answered as ``status`` with the JSON ``body`` (and ``headers``) by the app's exception handler."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers


def api_error(status: int, reason: str, message: str, **extra: Any) -> ApiError:
    """``{"error": reason, "message": message, **extra}`` with HTTP ``status``."""
    return ApiError(status, {"error": reason, "message": message, **extra})


async def read_body(request: Request) -> bytes:
    """The body, but never more than ``READ_LIMIT`` bytes of it: a 10 MB request is refused, not buffered."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size >= READ_LIMIT:
            break
    return b"".join(chunks)


def safe_id(eval_id: str) -> str:
    """``eval_id`` if it is a DNS label; else a 422 :class:`ApiError`."""
    try:
        return check_dns_label(eval_id, field="eval_id")
    except UnsafeIdError as exc:
        raise api_error(422, exc.reason, exc.message) from None


def plain(row: Any) -> Any:
    """A row (pydantic model, named tuple or plain value) as JSON-ready data."""
    dump = getattr(row, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if hasattr(row, "_asdict"):
        return row._asdict()
    return row
