"""Build and read CloudEvents 1.0 (structured JSON mode) for budeval's topics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SOURCE = "urn:budeval"
TYPE_PREFIX = "io.budeval.evaluation."
REQUEST_TYPE = "io.budeval.evaluation.requested"
EventKind = Literal[
    "started", "progress", "completed", "failed", "cancelled", "rejected", "duplicate", "archived",
    "gate.passed", "gate.failed", "gate.inconclusive",
]


class CloudEvent(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=512)
    source: str = Field(min_length=1, max_length=512)
    type: str = Field(min_length=1, max_length=256)
    subject: str | None = None
    time: str | None = None
    datacontenttype: str | None = "application/json"
    data: Any = None


def make_event(kind: EventKind, event_id: str, eval_id: str | None, data: dict[str, Any]) -> CloudEvent:
    """An outbound event; ``data`` always carries ``eval_id`` (when known) and ``status``."""
    body = {"eval_id": eval_id, "status": data.get("status", kind), **data}
    return CloudEvent(
        id=event_id,
        source=SOURCE,
        type=TYPE_PREFIX + kind,
        subject=eval_id,
        time=datetime.now(UTC).isoformat(),
        data=body,
    )


def make_request_event(request: dict[str, Any], event_id: str) -> CloudEvent:
    return CloudEvent(id=event_id, source=SOURCE, type=REQUEST_TYPE, subject=str(request.get("eval_id")), data=request)


def kind_of(event: dict[str, Any]) -> str:
    """``completed`` for ``io.budeval.evaluation.completed``; the raw type for foreign events."""
    etype = str(event.get("type", ""))
    return etype[len(TYPE_PREFIX) :] if etype.startswith(TYPE_PREFIX) else etype


def to_json(event: CloudEvent) -> str:
    return json.dumps(event.model_dump(mode="json", exclude_none=True), separators=(",", ":"))
