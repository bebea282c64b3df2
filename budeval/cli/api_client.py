"""One call of the service's HTTP API from the CLI, its answers translated into :mod:`budeval.errors` exceptions.

404 -> :class:`NotFoundError`, 401 -> :class:`ValidationError` (the token), 409 with ``overlap`` (a refused gate)
-> :class:`GateRefusedError`, 422 -> :class:`ValidationError`, no answer or 5xx -> :class:`TransientError`, anything
else -> :class:`BudevalError`; messages carry the service's own ``message``, cut short.
"""

from __future__ import annotations

from typing import Any

import httpx

from budeval.cli.locate import api_token, api_url
from budeval.config import Settings
from budeval.errors import BudevalError, GateRefusedError, NotFoundError, TransientError, ValidationError


def call_api(
    method: str,
    path: str,
    params: dict[str, Any] | list[tuple[str, Any]] | None = None,
    settings: Settings | None = None,
    body: bytes | None = None,
    ok: tuple[int, ...] = (),
) -> dict[str, Any]:
    """The JSON answer of ``method path`` (an object; a list is wrapped as ``{"result": [...]}``).

    ``ok``: further statuses answered as data rather than raised (e.g. 422 of a plan's rejection)."""
    settings = settings or Settings.from_env()
    base = api_url(settings)
    token = api_token(settings)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        answer = httpx.request(method, f"{base}{path}", params=params, headers=headers, content=body,
                               timeout=settings.client_timeout_s)
    except httpx.HTTPError as exc:
        raise TransientError(f"the service at {base} does not answer ({type(exc).__name__})") from None
    try:
        doc: Any = answer.json()
    except ValueError:
        doc = {"message": answer.text[:300]}
    if not isinstance(doc, dict):
        doc = {"result": doc}
    if answer.is_success or answer.status_code in ok:
        return dict(doc)
    message = str(doc.get("message") or doc.get("detail") or doc)[:500]
    if answer.status_code == 404:
        raise NotFoundError(str(doc.get("message", "not found")))
    if answer.status_code == 401:
        raise ValidationError("the service refused the token (set BUDEVAL_API_TOKEN)")
    if answer.status_code == 409 and "overlap" in doc:
        raise GateRefusedError(message, overlap=doc["overlap"])
    if answer.status_code == 422:
        raise ValidationError(message)
    if answer.status_code >= 500:
        raise TransientError(f"the service at {base} answered HTTP {answer.status_code}: {message}")
    raise BudevalError(f"HTTP {answer.status_code}: {message}")
