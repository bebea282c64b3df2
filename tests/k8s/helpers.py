"""Waiting on the watcher's reports and on API objects, with generous upper bounds (never timing assertions)."""

from __future__ import annotations

import queue
import time
from functools import partial

from budeval.backends.base import RunState
from tests.support import wait_until

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


#: Polls the apiserver every 0.2 s, up to WAIT_S.
wait_until = partial(wait_until, timeout=WAIT_S, interval=0.2)
