"""Who may call the service: a bearer token for people and programs, Dapr's app API token for the sidecar.

* Everything except ``/healthz``, ``/readyz``, ``/metrics`` and the Dapr routes needs ``Authorization: Bearer <T>``
  where ``T`` comes from ``BUDEVAL_API_TOKEN`` or the file named by ``BUDEVAL_API_TOKEN_FILE`` (a mounted Secret).
* The Dapr routes (``/dapr/subscribe``, ``/events/requests``) are called by daprd, which cannot send our bearer
  token; Dapr's own mechanism is the app API token (``dapr.io/app-token-secret``), which daprd sends as the
  ``dapr-api-token`` header and exposes to the app as ``APP_API_TOKEN``. When it is set, those routes require it
  (a bearer token is accepted too); when it is not, they are open, exactly as the topic itself is open to anyone who
  may publish on the broker.

Comparisons are constant-time (``hmac.compare_digest``); tokens are never logged or echoed.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from budeval.config import Settings, reveal
from budeval.errors import ValidationError

DAPR_TOKEN_HEADER = "dapr-api-token"  # noqa: S105 (a header name, not a secret)


def _read_file(path: str, what: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValidationError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if not value:
        raise ValidationError(f"{what} file {path} is empty")
    return value


def load_api_token(settings: Settings) -> str | None:
    """The settings' ``api_token`` (``BUDEVAL_API_TOKEN``), else the content of ``api_token_file``
    (``BUDEVAL_API_TOKEN_FILE``), else None. Raises :class:`ValidationError` for an unreadable or empty file."""
    token = (reveal(settings.api_token) or "").strip()
    if token:
        return token
    path = str(settings.api_token_file or "").strip()
    return _read_file(path, "BUDEVAL_API_TOKEN_FILE") if path else None


def load_app_token(settings: Settings) -> str | None:
    """Dapr's app API token (``APP_API_TOKEN``), which daprd sends with every call to the app."""
    return (reveal(settings.app_api_token) or "").strip() or None


def ensure_local_token(path: Path) -> str:
    """The embedded mode's token when none is configured: generated once, kept in a 0600 file for the CLI."""
    if path.is_file():
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    return token


def _same(given: str | None, expected: str) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


@dataclass(frozen=True)
class Auth:
    api_token: str | None
    app_token: str | None = None

    def bearer_ok(self, authorization: str | None) -> bool:
        if self.api_token is None:
            return True
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and _same(value.strip(), self.api_token)

    def dapr_ok(self, dapr_token: str | None, authorization: str | None) -> bool:
        if self.app_token is None:
            return True
        return _same(dapr_token, self.app_token) or (self.api_token is not None and self.bearer_ok(authorization))
