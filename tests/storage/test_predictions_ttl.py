"""The predictions TTL on real chDB: migration 8 adds ``stored_at``, the setting ``predictions_ttl_s`` becomes the
table's TTL (``budeval migrate``), and rows past it really go at the next merge (``OPTIMIZE ... FINAL``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from budeval.cli.main import main
from budeval.storage.clickhouse import ClickHouseStore
from budeval.storage.factory import open_store
from budeval.storage.migrations import MIGRATIONS
from tests.cli.support import run_cli

from .fakes import simple_run


def _count(store: ClickHouseStore, table: str) -> int:
    return int(store._rows("count", f"SELECT count() FROM {table}")[0][0])


def _fill(store: ClickHouseStore, eval_id: str) -> None:
    store.store_run(eval_id, "r0", simple_run("20260101_000000", {("m", "qa"): 50.0},
                                              {("m", "qa"): [True, False, True, False]}))


def test_migration_8_adds_stored_at_and_rows_expire_after_a_short_ttl(store: ClickHouseStore) -> None:
    assert 8 in {m.version for m in MIGRATIONS}
    _fill(store, "ev-old")
    assert store.predictions_ttl() is None and store.apply_predictions_ttl(0).change == "unchanged"
    assert store.apply_predictions_ttl(3600).change == "set" and store.predictions_ttl() == 3600
    assert store.apply_predictions_ttl(3600).change == "unchanged"
    assert store.expiring_predictions(3600) == 0
    time.sleep(2.1)  # stored_at has a resolution of one second
    assert store.expiring_predictions(1) == 4 and _count(store, "predictions") == 4  # what `budeval gc` reports
    assert store.apply_predictions_ttl(1).change == "set" and store.predictions_ttl() == 1
    store._command("merge", "OPTIMIZE TABLE predictions FINAL")  # (chDB may have merged them away already)
    assert _count(store, "predictions") == 0
    assert _count(store, "scores") == 1 and store.results("ev-old")  # scores are not touched by the TTL
    assert store.apply_predictions_ttl(0).change == "removed" and store.predictions_ttl() is None
    _fill(store, "ev-new")
    time.sleep(1.1)
    store._command("merge", "OPTIMIZE TABLE predictions FINAL")
    assert _count(store, "predictions") == 4  # no TTL any more: kept


def test_rows_stored_before_migration_8_get_the_migration_time(tmp_path: Path) -> None:
    """A store at version 6 with predictions: migration 8 materializes ``stored_at`` (else every merge would compute
    ``now()`` again and such rows would never expire)."""
    store = open_store(f"chdb://{tmp_path / 'ch'}")
    try:
        import budeval.storage.clickhouse_migrate as applying

        before = tuple(m for m in MIGRATIONS if m.version < 8)
        applying.MIGRATIONS, saved = before, applying.MIGRATIONS  # type: ignore[misc]
        try:
            store.migrate()
        finally:
            applying.MIGRATIONS = saved  # type: ignore[misc]
        # rows as a store at version 7 held them (this code's store_run writes later migrations' tables and columns)
        store._command("fill", "INSERT INTO predictions (eval_id, run_id, model, dataset, example_index, prompt, "
                       "prediction, gold, correct) SELECT 'ev-v6', 'r0', 'm', 'qa', number, '', '', '', number % 2 = 0 "
                       "FROM numbers(4)")
        assert store.migrate()[:1] == ["0008_predictions_stored_at"]  # (later migrations follow)
        stamps = store._rows("stamps", "SELECT DISTINCT stored_at FROM predictions")
        assert len(stamps) == 1
        time.sleep(1.1)
        assert store._rows("again", "SELECT DISTINCT stored_at FROM predictions") == stamps  # stored, not now()
    finally:
        store.close()


def test_budeval_migrate_applies_the_ttl_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = f"chdb://{tmp_path / 'ch'}"
    monkeypatch.setenv("BUDEVAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BUDEVAL_PREDICTIONS_TTL_S", str(30 * 86400))
    answer = json.loads(run_cli("migrate", "--store", dsn, "--json"))
    assert answer["predictions_ttl"] == "set" and answer["predictions_ttl_s"] == 30 * 86400
    assert "predictions TTL" not in run_cli("migrate", "--store", dsn)  # unchanged: nothing to say
    monkeypatch.setenv("BUDEVAL_PREDICTIONS_TTL_S", "0")
    assert "predictions TTL removed" in run_cli("migrate", "--store", dsn)
    store = open_store(dsn)
    try:
        assert store.predictions_ttl() is None
    finally:
        store.close()


def test_budeval_migrate_reconciles_the_example_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows changed outside the store (here an INSERT replacing a right verdict by a wrong one in place) leave the
    example sets behind; ``budeval migrate`` recomputes them from the rows and refills the evaluations that differ."""
    dsn = f"chdb://{tmp_path / 'ch'}"
    monkeypatch.setenv("BUDEVAL_DATA_DIR", str(tmp_path / "data"))
    store = open_store(dsn)
    try:
        store.migrate()
        _fill(store, "e1")
        _fill(store, "e2")
        store._command("replace a verdict", "INSERT INTO predictions SELECT * REPLACE (NOT assumeNotNull(correct) "
                       "AS correct) FROM predictions FINAL WHERE eval_id = 'e2' AND example_index = 0")
    finally:
        store.close()
    answer = json.loads(run_cli("migrate", "--store", dsn, "--json"))
    assert answer["example_sets_refilled"] == ["e2"]
    assert "example sets refilled" not in run_cli("migrate", "--store", dsn)  # equal now: nothing to say
    store = open_store(dsn)
    try:
        right = store._rows("right", "SELECT bitmapCardinality(judged_right) FROM example_sets FINAL "
                            "WHERE eval_id = 'e2'")
        assert right == [(1,)]  # example 2 (the union had kept 0 as well: a set cannot forget by a union)
    finally:
        store.close()


def test_a_negative_ttl_is_refused_by_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BUDEVAL_PREDICTIONS_TTL_S", "-1")
    assert main(["migrate", "--store", f"chdb://{tmp_path / 'ch'}"]) == 1
    assert "predictions_ttl_s" in capsys.readouterr().err
    assert not (tmp_path / "ch").exists()  # refused before anything was opened


def test_budeval_migrate_names_what_removing_the_ttl_refilled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``budeval migrate`` removing budeval's TTL (setting 0) reconciles the example sets of the rows it had expired:
    its ``example_sets_refilled`` names those evaluations (it said [] when the removal did the reconciling)."""
    dsn = f"chdb://{tmp_path / 'ch'}"
    monkeypatch.setenv("BUDEVAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BUDEVAL_PREDICTIONS_TTL_S", "3600")
    assert json.loads(run_cli("migrate", "--store", dsn, "--json"))["predictions_ttl"] == "set"
    store = open_store(dsn)
    try:
        _fill(store, "old")
        _fill(store, "new")
        store._command("age rows", "ALTER TABLE predictions UPDATE stored_at = now() - 100000 WHERE eval_id = 'old' "
                       "SETTINGS mutations_sync = 1")
        store._command("merge", "OPTIMIZE TABLE predictions FINAL")
    finally:
        store.close()
    monkeypatch.setenv("BUDEVAL_PREDICTIONS_TTL_S", "0")
    answer = json.loads(run_cli("migrate", "--store", dsn, "--json"))
    assert answer["predictions_ttl"] == "removed" and answer["example_sets_refilled"] == ["old"]
    assert json.loads(run_cli("migrate", "--store", dsn, "--json"))["example_sets_refilled"] == []
