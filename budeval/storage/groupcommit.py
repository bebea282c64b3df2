"""Group commit: concurrent small writes to one table become one insert, and every caller still waits for its row.

ClickHouse (and chDB most of all) pays per insert, not per row: a one-row insert creates a part, ~3-10 ms of CPU,
and later a merge; twenty rows in one insert cost ~1 ms each (measured on this machine, docs/storage.md). Evaluations
write a few tiny rows each (their row twice, a small run's scores, statuses and predictions), so with many in flight
the store spent most of its time creating parts. A :class:`GroupCommit` lets them share inserts, by default without
adding latency: the first caller writes at once; callers that arrive while it writes queue up, and the next one to
get the writer's turn writes all of them in one batch. Each caller returns only after the batch holding its item is
written, and gets the batch's error if it failed (so a retry loses nothing and a success is durable).

Under load that alone batches little: a batch is written in a few milliseconds, so the next one holds only what
arrived meanwhile (measured ~2 items per batch at 10-14 evaluations/s). With ``linger_s`` set, a writer first waits
up to that long for more items -- but only while items arrive from more than one thread, faster than one per
``linger_s`` (the mean gap of the last eight arrivals), so a lone caller or one thread storing in a loop never waits.
A full batch ends the wait at once. It trades a little latency for fewer inserts (docs/storage.md).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_WINDOW = 8  # the last arrivals that tell whether the store is busy


class _Entry(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """``submit(item)`` -> the result ``write(batch)`` gave for that item (``write`` returns one result per item)."""

    def __init__(
        self, write: Callable[[Sequence[T]], Sequence[R]], max_batch: int = 256, linger_s: float = 0.0
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._linger_s = max(0.0, linger_s)
        self._queue: list[_Entry[T, R]] = []
        self._queue_lock = threading.Lock()
        self._grown = threading.Condition(self._queue_lock)  # notified when the queue reaches a full batch
        self._arrivals: deque[tuple[float, int]] = deque(maxlen=_WINDOW)  # (monotonic time, thread id)
        self._writer = threading.Lock()  # one batch written at a time; whoever holds it writes what is queued
        #: Sizes of the batches written so far (tests and benchmarks read it; bounded to the last 1,000).
        self.batch_sizes: list[int] = []

    def submit(self, item: T) -> R:
        entry: _Entry[T, R] = _Entry(item)
        with self._queue_lock:
            self._queue.append(entry)
            self._arrivals.append((time.monotonic(), threading.get_ident()))
            if len(self._queue) >= self._max_batch:
                self._grown.notify()
        while not entry.done:
            with self._writer:
                if entry.done:  # a batch written by another caller held it
                    break
                with self._queue_lock:
                    if self._busy():
                        self._grown.wait_for(lambda: len(self._queue) >= self._max_batch, timeout=self._linger_s)
                    batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                if batch:
                    self._commit(batch)
        if entry.error is not None:
            raise entry.error
        return entry.result  # type: ignore[return-value]

    def _busy(self) -> bool:
        """Items arrive from several threads, faster than one per linger (so waiting gathers more); the caller holds
        the queue lock."""
        if not self._linger_s or len(self._arrivals) < _WINDOW or len(self._queue) >= self._max_batch:
            return False
        (first, _), (last, _) = self._arrivals[0], self._arrivals[-1]
        if len({thread for _, thread in self._arrivals}) < 2:
            return False
        return (last - first) / (_WINDOW - 1) < self._linger_s and time.monotonic() - last < self._linger_s

    def _commit(self, batch: list[_Entry[T, R]]) -> None:
        try:
            results = list(self._write([e.item for e in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"group commit: {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # every caller of the batch gets it; nothing is half reported
            for e in batch:
                e.error, e.done = exc, True
        else:
            for e, result in zip(batch, results, strict=True):
                e.result, e.done = result, True
        self.batch_sizes.append(len(batch))
        del self.batch_sizes[:-1000]
