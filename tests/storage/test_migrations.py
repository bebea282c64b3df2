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


def test_a_store_of_version_2_with_rows_migrates_to_replicas_and_reasons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An existing store keeps its rows (replica 0, no reason); afterwards replicas and judges are rows of their own."""
    import budeval.storage.clickhouse_migrate as clickhouse_module

    from .fakes import simple_run

    store = open_store(f"chdb://{tmp_path / 'ch'}")
    try:
        monkeypatch.setattr(clickhouse_module, "MIGRATIONS", MIGRATIONS[:2])
        store.migrate()
        store._command("old row", "INSERT INTO predictions (eval_id, run_id, model, dataset, example_index, prompt, "
                       "prediction, gold, correct) VALUES ('old', 'r0', 'm', 'qa', 0, 'p', 'x', 'g', true)")
        monkeypatch.setattr(clickhouse_module, "MIGRATIONS", MIGRATIONS)
        assert store.migrate() == [m.id for m in MIGRATIONS[2:]]
        assert store._rows("old", "SELECT replica, score FROM predictions FINAL WHERE eval_id = 'old'") == [(0, None)]
        run = simple_run("20260101_000000", {("m", "qa"): 50.0}, {("m", "qa"): [True, False]})
        store.store_run("new", "r0", run)
        store._command("replica", "INSERT INTO predictions (eval_id, run_id, model, dataset, example_index, replica, "
                       "prompt, prediction, gold, correct) VALUES ('new', 'r0', 'm', 'qa', 0, 1, 'p', 'x', 'g', false)")
        assert store.count("predictions", "new", final=True) == 3  # replica 1 of example 0 is not collapsed
    finally:
        store.close()


def test_migration_4_adds_provenance_columns_to_a_store_with_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store at schema 2 holding a row is upgraded: the row reads with defaults, the view shows the new columns."""
    from budeval.storage import clickhouse_migrate as clickhouse
    from budeval.storage.base import EvaluationRecord

    dsn = f"chdb://{tmp_path / 'ch'}"
    old = open_store(dsn)
    try:
        monkeypatch.setattr(clickhouse, "MIGRATIONS", MIGRATIONS[:2])
        old.migrate()
        old._command(
            "old row",
            "INSERT INTO evaluations (eval_id, status, provenance, updated_at, row_version) "
            "VALUES ('before', 'completed', '{}', now64(6), 1)",
        )
        monkeypatch.undo()
        assert next(m.id for m in MIGRATIONS if m.version >= 4) in old.migrate()
        before = old.get_evaluation("before")
        assert before is not None and (before.model_commit, before.engine_version, before.gpu_count) == ("", "", 0)
        old.record_evaluation(
            EvaluationRecord(
                eval_id="after",
                status="completed",
                model_commit="sha256:ab",
                engine_version="0.5.4",
                gpu_type="NVIDIA A100",
                gpu_count=2,
            )
        )
        rows = old._rows(
            "view",
            "SELECT eval_id, model_commit, engine_version, gpu_type, gpu_count "
            "FROM evaluations_current ORDER BY eval_id",
        )
        assert [tuple(r) for r in rows] == [
            ("after", "sha256:ab", "0.5.4", "NVIDIA A100", 2),
            ("before", "", "", "", 0),
        ]
    finally:
        old.close()


def test_migration_6_adds_checkpoint_columns_to_a_store_with_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store at schema 5 holding a row is upgraded: the old row reads with no checkpoint, new rows keep theirs, the
    view shows the columns."""
    from budeval.storage import clickhouse_migrate as clickhouse
    from budeval.storage.base import EvaluationRecord

    dsn = f"chdb://{tmp_path / 'ch'}"
    old = open_store(dsn)
    try:
        monkeypatch.setattr(clickhouse, "MIGRATIONS", MIGRATIONS[:5])
        old.migrate()
        assert old.schema_version() == 5
        old._command(
            "old row",
            "INSERT INTO evaluations (eval_id, experiment_id, status, provenance, labels, updated_at, row_version) "
            "VALUES ('before', 'run-7', 'completed', '{}', map('step', '100'), now64(6), 1)",
        )
        monkeypatch.undo()
        assert old.migrate() == [m.id for m in MIGRATIONS[5:]]
        before = old.get_evaluation("before")
        assert before is not None
        assert (before.checkpoint_series, before.checkpoint_step, before.checkpoint_tokens) == ("", None, None)
        old.record_evaluation(
            EvaluationRecord(eval_id="after", status="completed", checkpoint_series="run-7", checkpoint_step=200,
                             checkpoint_tokens=2**40)
        )
        after = old.get_evaluation("after")
        assert after is not None and (after.checkpoint_series, after.checkpoint_step) == ("run-7", 200)
        assert after.checkpoint_tokens == 2**40
        rows = old._rows(
            "view",
            "SELECT eval_id, checkpoint_series, checkpoint_step, checkpoint_tokens FROM evaluations_current "
            "ORDER BY eval_id",
        )
        assert [tuple(r) for r in rows] == [("after", "run-7", 200, 2**40), ("before", "", None, None)]
        # the old row joins the series by its experiment and step label, before the new one
        assert [(c.eval_id, c.step) for c in old.series_checkpoints("run-7")] == [("before", 100), ("after", 200)]
    finally:
        old.close()
