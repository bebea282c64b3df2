"""Turns a raw request (a CloudEvent from the topic or a JSON body) into an EvalRequest, or a rejection.

A malformed request must never crash the process, start a run, or be retried forever: every failure here becomes a
:class:`Rejection` (reason + offending field) that the caller publishes as a ``rejected`` event and answers with
Dapr's DROP.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from budeval.schemas.request import EvalRequest

#: Requests are small documents; anything larger is refused before parsing.
MAX_REQUEST_BYTES = 256 * 1024
_EVAL_ID = re.compile(rb'"eval_id"\s*:\s*"([a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?)"')


def sniff_eval_id(body: bytes | str) -> str | None:
    """The eval id of a body too large (or too deep) to parse, when one is plainly there; for the rejection only."""
    raw = body.encode("utf-8", "replace") if isinstance(body, str) else body
    found = _EVAL_ID.search(raw[: MAX_REQUEST_BYTES + 1])
    return found.group(1).decode("ascii") if found else None


@dataclass(frozen=True)
class Rejection:
    reason: str
    field: str | None = None
    eval_id: str | None = None


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<request>"


def parse_request(body: bytes | str | dict[str, Any]) -> EvalRequest | Rejection:
    """Accept a structured CloudEvent (``data`` holds the request, as an object or a JSON string) or a bare request."""
    if isinstance(body, str | bytes):
        if len(body) > MAX_REQUEST_BYTES:
            return Rejection(f"request is larger than the limit of {MAX_REQUEST_BYTES} bytes", "<request>",
                             sniff_eval_id(body))
        try:
            doc: Any = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return Rejection(f"not valid JSON: {str(exc)[:200]}", "<request>")
    else:
        doc = body
    if isinstance(doc, dict) and "specversion" in doc:
        doc = doc.get("data")
        if isinstance(doc, str):
            try:
                doc = json.loads(doc)
            except ValueError as exc:
                return Rejection(f"CloudEvent data is not valid JSON: {str(exc)[:200]}", "data")
    if not isinstance(doc, dict):
        return Rejection(f"request must be a JSON object, got {type(doc).__name__}", "<request>")
    raw_id = doc.get("eval_id")
    shown_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= 63 else None
    try:
        # Strict JSON types: "64" is not an integer and "yes" not a boolean; a producer's type error is rejected,
        # never silently coerced into an evaluation nobody asked for.
        return EvalRequest.model_validate_json(json.dumps(doc), strict=True)
    except (PydanticValidationError, ValueError) as exc:
        if not isinstance(exc, PydanticValidationError):
            return Rejection(f"request cannot be re-encoded as JSON: {str(exc)[:200]}", "<request>", shown_id)
        first = exc.errors(include_url=False, include_input=False)[0]
        return Rejection(f"{first['msg']}", _loc(first["loc"]), shown_id)
