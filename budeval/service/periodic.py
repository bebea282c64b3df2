"""A background round every N seconds: the loop both the housekeeping and the progress monitor run.

A subclass implements :meth:`Periodic.run_once`; :meth:`Periodic.start_every` starts a daemon thread that calls it
every ``interval_s`` seconds (none for ``interval_s <= 0``), logs a failed round as a warning and goes on with the
next one (the store or the sidecar may be away for a while); :meth:`Periodic.stop` ends the loop and waits up to 30 s
for a round in progress.
"""

from __future__ import annotations

import threading
from typing import Any

from budeval.logs import get_logger


class Periodic:
    """Base of a service part that works in rounds on a thread of its own."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> Any:
        """One round; an exception is logged by the loop, which goes on."""
        raise NotImplementedError

    def start_every(self, interval_s: float, name: str) -> None:
        """Start the rounds: every ``interval_s`` seconds on a daemon thread called ``name``; nothing when <= 0."""
        if interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, args=(interval_s, name), name=name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """End the rounds (a round in progress finishes first: up to 30 s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self, interval_s: float, name: str) -> None:
        log = get_logger(component=name)
        while not self._stop.wait(interval_s):
            try:
                self.run_once()
            except Exception as exc:  # the store or the sidecar is away: next round
                log.warning(f"{name} round failed", error=type(exc).__name__, message=str(exc)[:300])
