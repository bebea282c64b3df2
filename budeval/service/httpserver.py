"""uvicorn's HTTP/1.1 protocol with a read deadline: a client gets ``http_read_timeout_s`` to send one request.

uvicorn closes idle keep-alive connections, but a connection that sends nothing, or sends its headers or body a byte
at a time, is never timed out; enough of them hold the server. Here a deadline is armed when a connection opens or a
request's first bytes arrive, not extended by further bytes, and cleared once the whole request is in; when it
passes, the connection is closed. Concurrency is capped by uvicorn's ``limit_concurrency`` (503 beyond it).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class DeadlineH11Protocol(H11Protocol):
    """:class:`H11Protocol` plus the read deadline (``read_timeout_s`` class attribute, set by :func:`protocol`)."""

    read_timeout_s: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._receiving():
            self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _receiving(self) -> bool:
        """A request has started arriving but is not complete (headers or body still missing)."""
        state = self.conn.their_state
        return state is h11.SEND_BODY or (state is h11.IDLE and bool(self.conn.trailing_data[0]))

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if (self._receiving() or self.cycle is None) and not self.transport.is_closing():
            self.transport.close()


def protocol(read_timeout_s: float) -> type[DeadlineH11Protocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with this read deadline."""
    return type("BudevalH11Protocol", (DeadlineH11Protocol,), {"read_timeout_s": read_timeout_s})
