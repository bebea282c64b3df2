"""SQLite (WAL) write-through persistence shared by the workflow engine and the pub/sub log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, meta TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history (instance_id TEXT NOT NULL, idx INTEGER NOT NULL, event BLOB NOT NULL,
    PRIMARY KEY (instance_id, idx));
CREATE TABLE IF NOT EXISTS inbox (rowid INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL,
    due REAL NOT NULL, event BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS inbox_instance ON inbox (instance_id);
CREATE TABLE IF NOT EXISTS activities (token TEXT PRIMARY KEY, instance_id TEXT NOT NULL, request BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS activities_instance ON activities (instance_id);
CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, pubsub TEXT NOT NULL, topic TEXT NOT NULL,
    event TEXT NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS messages_topic ON messages (pubsub, topic, seq);
CREATE TABLE IF NOT EXISTS cursors (sub TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS retries (sub TEXT NOT NULL, seq INTEGER NOT NULL, attempt INTEGER NOT NULL,
    due REAL NOT NULL, PRIMARY KEY (sub, seq));
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode: a commit survives kill -9 of the process without an fsync per commit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: durable across process crashes (the OS keeps the WAL); only power loss may lose commits.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn
