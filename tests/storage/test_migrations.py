"""Migrations: applied once, recorded with a checksum, repeatable at every start, refusing newer or edited schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from budeval.errors import SchemaVersionError
from budeval.storage.clickhouse import ClickHouseStore
from budeval.storage.factory import open_store
from budeval.storage.migrations import LATEST_VERSION, MIGRATIONS, MIGRATIONS_TABLE


def _tables(store: ClickHouseStore) -> set[str]:
    return {
        str(r[0]) for r in store._rows("tables", "SELECT name FROM system.tables WHERE database = currentDatabase()")
    }


def test_first_migrate_applies_every_migration_and_records_it(tmp_path: Path) -> None:
    store = open_store(f"chdb://{tmp_path / 'ch'}")
    try:
        assert store.schema_version() == 0
        applied = store.migrate()
        assert applied == [m.id for m in MIGRATIONS]
        recorded = store.applied_migrations()
        assert {v: c for v, (_, c) in recorded.items()} == {m.version: m.checksum for m in MIGRATIONS}
        assert store.schema_version() == LATEST_VERSION
        assert {"evaluations", "scores", "dataset_status", "predictions", "evaluations_current", "scores_current"} <= (
            _tables(store)
        )
    finally:
        store.close()


def test_migrate_again_and_after_reopen_applies_nothing(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'ch'}"
    store = open_store(dsn)
    try:
        store.migrate()
        assert store.migrate() == []
    finally:
        store.close()
    again = open_store(dsn)
    try:
        assert again.migrate() == []
        rows = again._rows("count", f"SELECT count() FROM {MIGRATIONS_TABLE} FINAL")
        assert rows[0][0] == len(MIGRATIONS)
    finally:
        again.close()


def test_newer_schema_in_the_store_is_refused(store: ClickHouseStore) -> None:
    future = LATEST_VERSION + 7
    store._insert(
        MIGRATIONS_TABLE,
        ("version", "name", "checksum", "applied_at"),
        [[future], ["future"], ["x"], [datetime.now(UTC)]],
    )
    with pytest.raises(SchemaVersionError, match=f"schema version {future}"):
        store.migrate()


def test_an_edited_migration_is_refused(store: ClickHouseStore) -> None:
    store._insert(
        MIGRATIONS_TABLE,
        ("version", "name", "checksum", "applied_at"),
        [[1], ["initial"], ["0" * 64], [datetime(2099, 1, 1, tzinfo=UTC)]],
    )
    store._command("optimize", f"OPTIMIZE TABLE {MIGRATIONS_TABLE} FINAL")
    with pytest.raises(SchemaVersionError, match="differs"):
        store.migrate()
