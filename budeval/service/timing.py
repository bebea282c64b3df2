"""``Server-Timing`` on every HTTP response: the time the app took until it started its response.

The header is the W3C Server Timing one (https://www.w3.org/TR/server-timing/): ``Server-Timing: app;dur=12.3``, the
duration in milliseconds from the request reaching the ASGI app to the response's first byte (its status line and
headers), which browsers show in their network panel and ``scripts/bench_ui.py`` reads as the server time of a page.
It says how long the server worked, nothing about what it read, so it discloses nothing the response does not.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"server-timing"


class ServerTimingMiddleware:
    """Pure ASGI middleware: adds ``Server-Timing: app;dur=<ms>`` to every HTTP response's start message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed_ms = (time.perf_counter() - began) * 1000
                headers: list[Any] = list(message.get("headers", []))
                headers.append((HEADER, f"app;dur={elapsed_ms:.1f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)


def server_time_ms(header: str | None) -> float | None:
    """The ``app`` duration (ms) of a ``Server-Timing`` header value, or None when absent or unreadable."""
    for part in (header or "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() != "app":
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur":
                try:
                    return float(value)
                except ValueError:
                    return None
    return None
