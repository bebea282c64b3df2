"""Rendering of the UI's pages: one Jinja2 environment over the package's templates (autoescaped), a few filters, and
the security headers every page carries (a strict Content-Security-Policy: scripts and styles only from the UI's own
static files, so an injected ``<script>`` in a prompt or prediction could not run even if escaping failed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

#: Shown for a missing value (an en dash).
MISSING = "\u2013"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _score(value: Any, digits: int = 2) -> str:
    if value is None:
        return MISSING
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def _signed(value: Any, digits: int = 2) -> str:
    if value is None:
        return MISSING
    return f"{float(value):+.{digits}f}"


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, str) and value:
        return value.replace("T", " ")[:19] + " UTC"
    return MISSING


def _query(base: dict[str, Any], **changes: Any) -> str:
    """``?a=1&b=2`` of ``base`` with ``changes`` (None removes a key): links that keep the page's other filters."""
    merged = {**base, **changes}
    kept = {k: v for k, v in merged.items() if v is not None and v != ""}
    return "?" + urlencode(kept) if kept else "?"


def _as_json(value: Any) -> str:
    """JSON for a ``<script type="application/json">`` block: ``<`` escaped so the block cannot be closed early."""
    return json.dumps(value, default=str, separators=(",", ":")).replace("<", "\\u003c")


def static_version(files: Mapping[str, bytes]) -> str:
    """12 hex digits of SHA-256 over the static files (name and content): the ``?v=`` of every asset link, so that a
    new release's pages never run with a browser's cached copy of the old CSS/JavaScript (the files are cached an
    hour)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode("utf-8") + b"\0" + files[name] + b"\0")
    return digest.hexdigest()[:12]


def package_static() -> dict[str, bytes]:
    """Every file under the package's ``static/`` folder: path relative to it -> content."""
    found: dict[str, bytes] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                found[f"{prefix}{child.name}"] = child.read_bytes()

    walk(resources.files("budeval.ui") / "static", "")
    return found


_env = Environment(
    loader=PackageLoader("budeval.ui", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(score=_score, signed=_signed, when=_when, as_json=_as_json)
_env.globals.update(query=_query, static_v=static_version(package_static()))


def render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The page ``template`` with ``context`` and :data:`HEADERS`."""
    html = _env.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)
