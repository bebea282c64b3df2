"""Applying the forward-only migrations of budeval/storage/migrations.py to a store, once each, with checksums. A
mixin of :class:`~budeval.storage.clickhouse.ClickHouseStore` (its ``_command``/``_rows``/``_insert`` and lock)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from budeval.errors import SchemaVersionError
from budeval.storage.migrations import CREATE_MIGRATIONS_TABLE, MIGRATIONS, MIGRATIONS_TABLE, Migration


class StoreMigrations:
    """``migrate`` refuses a store whose schema is newer than this code, or whose applied migration was edited."""

    _lock: threading.RLock
    _types: dict[Any, Any]
    _where: str
    _log: Any

    def _rows(self, what: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _command(self, what: str, sql: str, params: dict[str, Any] | None = None) -> None:
        raise NotImplementedError

    def _insert(
        self, table: str, columns: Sequence[str], data: list[list[Any]], settings: dict[str, Any] | None = None
    ) -> None:
        raise NotImplementedError

    # -- migrations ------------------------------------------------------------------------------------------------
    def applied_migrations(self) -> dict[int, tuple[str, str]]:
        """version -> (name, checksum) of every recorded migration."""
        self._command("create migrations table", CREATE_MIGRATIONS_TABLE)
        rows = self._rows("read migrations", f"SELECT version, name, checksum FROM {MIGRATIONS_TABLE} FINAL")
        return {int(v): (str(n), str(c)) for v, n, c in rows}

    def schema_version(self) -> int:
        applied = self.applied_migrations()
        return max(applied, default=0)

    def migrate(self) -> list[str]:
        with self._lock:
            self._types.clear()
            applied = self.applied_migrations()
            known = {m.version: m for m in MIGRATIONS}
            newer = sorted(v for v in applied if v not in known)
            if newer:
                raise SchemaVersionError(
                    f"the store at {self._where} has schema version {max(newer)}, newer than this budeval knows "
                    f"({MIGRATIONS[-1].version}); upgrade budeval"
                )
            for version, (name, checksum) in applied.items():
                if known[version].checksum != checksum:
                    raise SchemaVersionError(
                        f"migration {version:04d}_{name} differs from the one applied to {self._where} "
                        "(migrations are append-only: add a new one instead of editing)"
                    )
            done: list[str] = []
            for migration in MIGRATIONS:
                if migration.version in applied:
                    continue
                self._apply(migration)
                done.append(migration.id)
            if done:
                self._log.info("migrations applied", applied=done)
            return done

    def _apply(self, migration: Migration) -> None:
        for statement in migration.statements:
            self._command(f"migration {migration.id}", statement)
        self._insert(
            MIGRATIONS_TABLE,
            ("version", "name", "checksum", "applied_at"),
            [[migration.version], [migration.name], [migration.checksum], [datetime.now(UTC)]],
        )
