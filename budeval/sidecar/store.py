"""SQLite persistence for the embedded sidecar: every state change is committed before it is acknowledged.

WAL mode with ``synchronous=NORMAL`` survives a killed process (``kill -9``): a committed transaction is in the WAL
file, which the next open replays. (It does not promise durability across a power loss; the cluster uses daprd.)
All calls come from the engine or broker under their own lock; one connection serves both (``check_same_thread``
off, serialised by :attr:`lock`).

The layout's version is SQLite's ``PRAGMA user_version`` (an integer in the file header, 0 in a new file). Opening a
file migrates it forward (:data:`MIGRATIONS`, in one transaction that also records the new version); a file written
by a newer budeval (a version above :data:`SCHEMA_VERSION`) is refused with
:class:`~budeval.errors.SchemaVersionError` before anything in it is changed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from budeval.errors import SchemaVersionError

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

#: The layout this code reads and writes (``PRAGMA user_version``). Version 1 is :data:`SCHEMA`; files written before
#: versions were recorded say 0 and already hold exactly these tables, so their migration only records the version.
#: Version 2 adds the owning app of instances and activities and an instance's received propagated history.
SCHEMA_VERSION = 2

#: ``{from_version: statements}``: what takes a file from that version to the next (idempotent DDL; a new file starts
#: at 0 and runs every step). Append a step and raise :data:`SCHEMA_VERSION` when the layout changes; never edit one.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    0: tuple(stmt.strip() for stmt in SCHEMA.split(";") if stmt.strip()),
    # 2: app-id routing and history propagation (rows from version 1 belong to the sidecar's own app, NULL)
    1: ("ALTER TABLE instances ADD COLUMN app_id TEXT", "ALTER TABLE instances ADD COLUMN propagated BLOB",
        "ALTER TABLE activities ADD COLUMN app_id TEXT"),
}


class SidecarStore:
    """A thin wrapper over one SQLite connection; callers group statements with :meth:`tx`.

    Opening ``path`` (created with its parent folders if missing) brings the file to :data:`SCHEMA_VERSION`. Raises
    :class:`~budeval.errors.SchemaVersionError` (terminal; the file is left untouched and closed) when the file
    records a newer version, and ``sqlite3.Error`` when it is not an SQLite database.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lock = threading.RLock()
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        try:
            self.db.execute("PRAGMA busy_timeout=5000")
            self._refuse_newer(self.version())  # before the journal mode or anything else is written
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except BaseException:
            self.db.close()
            raise
        self._depth = 0

    def version(self) -> int:
        """The layout version the file records (``PRAGMA user_version``; 0 for a new or pre-versioning file)."""
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the sidecar state {self.path} has schema version {version}, newer than this budeval knows "
                f"({SCHEMA_VERSION}); upgrade budeval or point the sidecar at another state file"
            )

    def _migrate(self) -> None:
        """Every step from the file's version to :data:`SCHEMA_VERSION`, with the new version, in one transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = self.version()  # again, under the write lock: another process may have migrated meanwhile
            self._refuse_newer(version)
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    if not self._has_column(statement):
                        self.db.execute(statement)
            if version != SCHEMA_VERSION:
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION:d}")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _has_column(self, statement: str) -> bool:
        """True when ``statement`` is ``ALTER TABLE t ADD COLUMN c ...`` and ``t`` already has ``c`` (SQLite has no
        ``ADD COLUMN IF NOT EXISTS``; this keeps every step idempotent)."""
        words = statement.split()
        if len(words) < 6 or [w.upper() for w in (words[0], words[1], words[3], words[4])] != [
                "ALTER", "TABLE", "ADD", "COLUMN"]:
            return False
        return any(row[1] == words[5] for row in self.db.execute(f"PRAGMA table_info({words[2]})"))

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
