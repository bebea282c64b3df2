"""The web UI of ``budeval serve`` under ``/ui``: server-rendered pages (Jinja2) over the same query layer as the CLI
and the HTTP API (budeval/storage, budeval/decisions), a token login with an HttpOnly, SameSite=Strict session cookie
and CSRF tokens on every state-changing form (docs/ui.md)."""

from budeval.ui.deps import UiDeps
from budeval.ui.routes import UI_PREFIX, ui_router

__all__ = ["UI_PREFIX", "UiDeps", "ui_router"]
