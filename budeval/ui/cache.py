"""A small time-bounded cache for what every page's pickers read (the store's catalog of datasets, metrics, models and
series): it changes when evaluations finish, not between two clicks, and reading it costs a scan of the scores."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: Seconds a catalog stays fresh (a new dataset shows up in the pickers at most this late).
CATALOG_TTL_S = 30.0


class Ttl(Generic[T]):
    """``get()``: ``load()``'s value, loaded again when older than ``ttl_s`` seconds (one loader at a time)."""

    def __init__(self, load: Callable[[], T], ttl_s: float = CATALOG_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load, self._ttl, self._clock = load, ttl_s, clock
        self._value: T | None = None
        self._at = float("-inf")
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._value is None or self._clock() - self._at > self._ttl:
                self._value = self._load()
                self._at = self._clock()
            return self._value


class CachedCatalog:
    """The store with its ``catalog()`` behind a :class:`Ttl`; every other attribute is the store's own."""

    def __init__(self, store: object, ttl_s: float = CATALOG_TTL_S) -> None:
        self._store = store
        self._catalog: Ttl[object] = Ttl(lambda: store.catalog(), ttl_s)  # type: ignore[attr-defined]

    def catalog(self) -> object:
        return self._catalog.get()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
