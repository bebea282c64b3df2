"""SQLite persistence for the embedded sidecar: every state change is committed before it is acknowledged.

WAL mode with ``synchronous=NORMAL`` survives a killed process (``kill -9``): a committed transaction is in the WAL
file, which the next open replays. (It does not promise durability across a power loss; the cluster uses daprd.)
All calls come from the engine or broker under their own lock; one connection serves both (``check_same_thread``
off, serialised by :attr:`lock`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, execution_id TEXT NOT NULL, status INTEGER NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL, completed REAL, start_at REAL,
    input TEXT, output TEXT, custom_status TEXT, failure BLOB,
    parent_id TEXT, parent_task_id INTEGER, parent_execution_id TEXT
);
CREATE TABLE IF NOT EXISTS history (instance_id TEXT NOT NULL, idx INTEGER NOT NULL, event BLOB NOT NULL,
    PRIMARY KEY (instance_id, idx));
CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL,
    event BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS inbox_instance ON inbox (instance_id);
CREATE TABLE IF NOT EXISTS activities (instance_id TEXT NOT NULL, task_id INTEGER NOT NULL, execution_id TEXT NOT NULL,
    request BLOB NOT NULL, PRIMARY KEY (instance_id, task_id));
CREATE TABLE IF NOT EXISTS timers (instance_id TEXT NOT NULL, timer_id INTEGER NOT NULL, execution_id TEXT NOT NULL,
    fire_at REAL NOT NULL, event BLOB NOT NULL, PRIMARY KEY (instance_id, timer_id));
CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, pubsub TEXT NOT NULL, topic TEXT NOT NULL,
    event TEXT NOT NULL, created REAL NOT NULL, fanned_out INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS messages_topic ON messages (topic, seq);
CREATE TABLE IF NOT EXISTS deliveries (seq INTEGER NOT NULL, route TEXT NOT NULL, attempts INTEGER NOT NULL,
    next_at REAL NOT NULL, PRIMARY KEY (seq, route));
"""


class SidecarStore:
    """A thin wrapper over one SQLite connection; callers group statements with :meth:`tx`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lock = threading.RLock()
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)
        self._depth = 0

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction (nested calls join the outer one); committed before the caller acknowledges anything."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.db
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
            finally:
                self._depth = 0

    def close(self) -> None:
        with self.lock:
            self.db.close()
