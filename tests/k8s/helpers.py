"""Waiting on the watcher's reports and on API objects, with generous upper bounds (never timing assertions)."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

from budeval.backends.base import RunState

WAIT_S = 120.0


class Reports:
    """Collects what the watcher reports; ``wait(run_id)`` returns the first terminal state of a run."""

    def __init__(self) -> None:
        self.queue: queue.Queue[RunState] = queue.Queue()
        self.seen: dict[str, RunState] = {}

    def __call__(self, state: RunState) -> None:
        self.queue.put(state)

    def wait(self, run_id: str, timeout: float = WAIT_S) -> RunState:
        deadline = time.monotonic() + timeout
        while run_id not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no report for run {run_id} within {timeout} s (seen: {sorted(self.seen)})")
            try:
                state = self.queue.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.setdefault(state.run_id, state)
        return self.seen[run_id]


def wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
