"""Group commit: concurrent small writes to one table become one insert, and every caller still waits for its row.

ClickHouse (and chDB most of all) pays per insert, not per row: a one-row insert creates a part, ~3-10 ms of CPU,
and later a merge; twenty rows in one insert cost ~1 ms each (measured on this machine, docs/storage.md). Evaluations
write a few tiny rows each (their row twice, a small run's scores, statuses and predictions), so with many in flight
the store spent most of its time creating parts. A :class:`GroupCommit` lets them share inserts without adding
latency: the first caller writes at once; callers that arrive while it writes queue up, and the next one to get the
writer's turn writes all of them in one batch. Each caller returns only after the batch holding its item is written,
and gets the batch's error if it failed (so a retry loses nothing and a success is durable).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Entry(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """``submit(item)`` -> the result ``write(batch)`` gave for that item (``write`` returns one result per item)."""

    def __init__(self, write: Callable[[Sequence[T]], Sequence[R]], max_batch: int = 256) -> None:
        self._write = write
        self._max_batch = max_batch
        self._queue: list[_Entry[T, R]] = []
        self._queue_lock = threading.Lock()
        self._writer = threading.Lock()  # one batch written at a time; whoever holds it writes what is queued
        #: Sizes of the batches written so far (tests and benchmarks read it; bounded to the last 1,000).
        self.batch_sizes: list[int] = []

    def submit(self, item: T) -> R:
        entry: _Entry[T, R] = _Entry(item)
        with self._queue_lock:
            self._queue.append(entry)
        while not entry.done:
            with self._writer:
                if entry.done:  # a batch written by another caller held it
                    break
                with self._queue_lock:
                    batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                if batch:
                    self._commit(batch)
        if entry.error is not None:
            raise entry.error
        return entry.result  # type: ignore[return-value]

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
