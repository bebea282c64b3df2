"""Defects found by breaking the example sets (migration 7) against the prediction rows: each test computes a
decision both ways -- from the sets and, with ``decisions_from_sets = False``, from the rows -- on the same real chDB
store and asserts identical outcomes. Each test names what used to go wrong."""

from __future__ import annotations

from pathlib import Path

from budeval.decisions.gate import evaluate_gate
from budeval.decisions.series import build_series
from budeval.storage.clickhouse import ClickHouseStore

from .support import PlantedRun, Row, both_ways, record, verdicts


def _expire(store: ClickHouseStore, eval_id: str) -> None:
    """Age ``eval_id``'s prediction rows past a one-hour predictions TTL and let ClickHouse drop them (a merge)."""
    store._command("age rows", "ALTER TABLE predictions UPDATE stored_at = now() - 100000 "
                   "WHERE eval_id = %(e)s SETTINGS mutations_sync = 1", {"e": eval_id})
    assert store.apply_predictions_ttl(3600).change in ("set", "unchanged")
    store._command("merge", "OPTIMIZE TABLE predictions FINAL")
    assert store.count("predictions", eval_id, final=True) == 0


def test_gate_and_series_after_the_predictions_ttl_expired_a_side(store: ClickHouseStore) -> None:
    # The TTL deleted the baseline's prediction rows but not its example sets: the gate from the sets still said
    # "regression" (exit 1) where the rows -- and docs/storage.md ("gates ... of old evaluations lose their data") --
    # say there is nothing to compare; the series kept the expired checkpoint with empty prompts.
    record(store, "a", PlantedRun(verdicts("q", [True] * 300)))
    record(store, "b", PlantedRun(verdicts("q", [i >= 100 for i in range(300)])), order=1)
    for k in range(3):
        rows: list[Row] = [("q", i, 0, (i + k) % 3 != 0, None) for i in range(30)]
        record(store, f"ck-{k}", PlantedRun(rows), checkpoint=("s", k, None), order=k)
    assert store._paired_from_sets("a", "b") is not None  # before: the sets decide
    _expire(store, "a")
    _expire(store, "ck-0")
    assert both_ways(store, lambda: evaluate_gate(store, "a", "b"))[0] == "refused"
    series = both_ways(store, lambda: build_series(store, "s", limit=3))
    assert [p["eval_id"] for p in series["checkpoints"]][:1] == ["ck-0"]
    assert store._paired_from_sets("b", "ck-1") is not None  # rows not expired: still from the sets


def test_series_lists_small_kinds_in_example_order(store: ClickHouseStore) -> None:
    # ClickHouse keeps a bitmap of at most 32 elements as a small hash set, whose bitmapToArray is in hash order:
    # the series from the sets listed forgotten examples 4, 2 where the rows (and docs/decisions.md: "ordered") list
    # 2, 4. Several small datasets with every kind, so that some set comes out of hash order.
    histories = ("RRR", "WWW", "WRW", "WRR", "RWW", "RRW", "WWR", "RWR", "WRW", "RWW", "RRW", "RWW", "WWR")
    for k in range(3):
        rows: list[Row] = [(f"d{j}", i, 0, histories[(i * (j + 1) + j) % len(histories)][k] == "R", None)
                           for j in range(6) for i in range(7 + j)]
        record(store, f"ck-{k}", PlantedRun(rows), checkpoint=("small", k, None), order=k)
    assert store._series_from_sets(store.series_checkpoints("small"), None, 5) is not None
    series = both_ways(store, lambda: build_series(store, "small", limit=5))
    for d in series["datasets"]:
        for kind in ("easy", "hard", "forgotten"):
            listed = [e["example_index"] for e in d["examples"].get(kind, [])]
            assert listed == sorted(listed), (d["dataset"], kind, listed)


def test_gate_after_the_predictions_ttl_was_removed(store: ClickHouseStore) -> None:
    # With the TTL gone (predictions_ttl_s back to 0) the sets are read unchecked again, and the sets of the rows it
    # had expired still said "regression". Removing the TTL brings the sets of such evaluations back to their rows.
    record(store, "a", PlantedRun(verdicts("q", [True] * 300)))
    record(store, "b", PlantedRun(verdicts("q", [i >= 100 for i in range(300)])), order=1)
    _expire(store, "a")
    assert store.apply_predictions_ttl(0).change == "removed"
    assert both_ways(store, lambda: evaluate_gate(store, "a", "b"))[0] == "refused"
    assert store._paired_from_sets("b", "b") is not None  # b's sets were kept


def test_an_example_key_beyond_uint32_is_a_parse_error(store: ClickHouseStore, tmp_path: Path) -> None:
    # example_index is UInt32 (predictions and the example sets): a key like "4294967296" in a predictions file made
    # the store's insert fail with StoreUnavailableError ("unavailable": a transient outage, retried) instead of the
    # dataset's predictions being reported unreadable, as for a key that is not an index.
    import json
    import shutil

    from budeval.engine.results import parse_run

    from .support import OPENCOMPASS

    run = tmp_path / "mcq"
    shutil.copytree(OPENCOMPASS / "mcq", run)
    [path] = run.glob("*/predictions/*/tiny_mcq.json")
    entries = json.loads(path.read_text())
    entries[str(2**32)] = entries.pop(next(iter(entries)))
    path.write_text(json.dumps(entries))
    parsed = parse_run(run)
    report = store.store_run("big", "r0", parsed)
    assert report.predictions == 0
    [status] = parsed.statuses
    assert status.status == "partial" and "4294967296" in (status.reason or "")


def _checkpoints(store: ClickHouseStore, n: int = 3, examples: int = 8) -> None:
    for k in range(n):
        record(store, f"c{k}", PlantedRun(verdicts("q", [(i + k) % 2 == 0 for i in range(examples)])),
               checkpoint=("s", k, None), order=k)


def _series_differs(store: ClickHouseStore) -> bool:
    """Whether the series from the sets differs from the series from the rows right now."""
    store.decisions_from_sets = True
    from_sets = build_series(store, "s", limit=3).model_dump()
    store.decisions_from_sets = False
    from_rows = build_series(store, "s", limit=3).model_dump()
    store.decisions_from_sets = True
    return from_sets != from_rows


def test_a_column_ttl_on_the_verdicts_is_a_ttl(store: ClickHouseStore) -> None:
    # A TTL on the column `correct` (not the table) empties the verdicts of expired rows; the TTL check read only the
    # engine clause, so the sets (which still hold those verdicts) were read unchecked.
    _checkpoints(store)
    assert not store.predictions_expire()
    store._command("column TTL", "ALTER TABLE predictions MODIFY COLUMN correct Nullable(Bool) "
                   "TTL stored_at + INTERVAL 1 HOUR")
    assert store.predictions_expire()
    store._command("age rows", "ALTER TABLE predictions UPDATE stored_at = now() - 100000 "
                   "WHERE eval_id = 'c0' SETTINGS mutations_sync = 1")
    store._command("merge", "OPTIMIZE TABLE predictions FINAL")
    series = both_ways(store, lambda: build_series(store, "s", limit=3))
    assert [p["position"] for p in series["datasets"][0]["points"]] == [1, 2]  # c0's verdicts are gone


def test_a_column_comment_saying_ttl_is_no_ttl(store: ClickHouseStore) -> None:
    store._command("comment", "ALTER TABLE predictions COMMENT COLUMN correct 'kept without TTL'")
    assert not store.predictions_expire()


def test_a_hand_written_ttl_removed_by_hand_is_reconciled_by_migrate(store: ClickHouseStore, tmp_path: Path) -> None:
    # An operator's TTL deleted c0's rows (the decisions checked and read the rows meanwhile), then the operator
    # removed it by hand: budeval found no TTL of its own to remove and never refilled, so the sets kept c0 for good.
    _checkpoints(store)
    store._command("hand TTL", "ALTER TABLE predictions MODIFY TTL stored_at + INTERVAL 2 HOUR")
    store._command("age rows", "ALTER TABLE predictions UPDATE stored_at = now() - 100000 "
                   "WHERE eval_id = 'c0' SETTINGS mutations_sync = 1")
    store._command("merge", "OPTIMIZE TABLE predictions FINAL")
    assert store.count("predictions", "c0", final=True) == 0
    assert not _series_differs(store)  # checked while the TTL is there
    store._command("hand removal", "ALTER TABLE predictions REMOVE TTL")
    assert store.apply_predictions_ttl(0).change == "unchanged"
    assert _series_differs(store)  # what `budeval migrate` repairs:
    assert store.reconcile_example_sets() == ["c0"]
    assert not _series_differs(store)
    assert store.reconcile_example_sets() == []


def test_an_insert_replacing_a_verdict_is_reconciled_by_migrate(store: ClickHouseStore) -> None:
    # An INSERT of a row with an existing key replaces it in `predictions FINAL` (ReplacingMergeTree), but the sets
    # are a union: they kept the old verdict as well.
    _checkpoints(store)
    store._command("correct a verdict by hand",
                   "INSERT INTO predictions SELECT * REPLACE (NOT assumeNotNull(correct) AS correct) "
                   "FROM predictions FINAL WHERE eval_id = 'c2' AND example_index = 0")
    assert _series_differs(store)
    assert store.reconcile_example_sets() == ["c2"]
    assert not _series_differs(store)


def test_a_column_ttl_on_verdicts_beside_scores_is_seen(store: ClickHouseStore) -> None:
    # As above, but the rows carry a per-example score beside the verdict (as OpenCompass evaluators with a score
    # do): the emptied verdict left the row "compared" by its score, so the sets-against-rows check (one total) saw
    # equal counts and the sets, still holding c0's and a's verdicts, were read: c0 stayed in the series and the
    # gate said "regression" from verdicts that no longer exist, where the rows refuse.
    for k in range(3):
        rows: list[Row] = [("q", i, 0, (i + k) % 2 == 0, float((i + k) % 2 == 0)) for i in range(8)]
        record(store, f"c{k}", PlantedRun(rows), checkpoint=("s", k, None), order=k)
    record(store, "a", PlantedRun([("g", i, 0, True, 1.0) for i in range(300)]), order=3)
    record(store, "b", PlantedRun([("g", i, 0, i >= 100, float(i >= 100)) for i in range(300)]), order=4)
    store._command("column TTL", "ALTER TABLE predictions MODIFY COLUMN correct Nullable(Bool) "
                   "TTL stored_at + INTERVAL 1 HOUR")
    store._command("age rows", "ALTER TABLE predictions UPDATE stored_at = now() - 100000 "
                   "WHERE eval_id IN ('c0', 'a') SETTINGS mutations_sync = 1")
    store._command("merge", "OPTIMIZE TABLE predictions FINAL")
    assert store._rows("v", "SELECT countIf(correct IS NOT NULL) FROM predictions FINAL WHERE eval_id = 'c0'") == [(0,)]
    series = both_ways(store, lambda: build_series(store, "s", limit=3))
    assert [p["position"] for p in series["datasets"][0]["points"]] == [1, 2]
    assert not store._sets_hold_the_rows(["a", "b"])
    both_ways(store, lambda: evaluate_gate(store, "a", "b"))


def test_an_operators_conditional_ttl_is_not_budevals(store: ClickHouseStore) -> None:
    # `TTL stored_at + INTERVAL n SECOND` followed by a WHERE (or GROUP BY, TO DISK, a second expression) starts like
    # budeval's own TTL: it was taken for budeval's and removed when predictions_ttl_s is 0.
    store._command("hand TTL", "ALTER TABLE predictions MODIFY TTL stored_at + INTERVAL 3600 SECOND "
                   "DELETE WHERE dataset = 'scratch'")
    assert store.predictions_ttl() is None
    assert store.apply_predictions_ttl(0).change == "kept foreign"
    assert store.predictions_expire()
    assert store.apply_predictions_ttl(7200).change == "set"  # a setting owns the TTL: replaced
    assert store.predictions_ttl() == 7200


def test_removing_the_ttl_after_thousands_of_evaluations_expired(store: ClickHouseStore) -> None:
    # Every expired evaluation is stale at the reconcile, and their eval ids went into one DELETE and one INSERT as a
    # literal: over ClickHouse's default max_query_size (256 KiB) at ~6,000 40-character ids, so the removal (and
    # every later `budeval migrate`) failed. The store's sessions raise max_query_size (budeval/storage/factory.py).
    store._command("fill", "INSERT INTO predictions (eval_id, run_id, model, dataset, example_index, prompt, "
                   "prediction, gold, correct) SELECT concat('eval-', toString(generateUUIDv4())), 'r0', 'm', 'q', 0, "
                   "'', '', '', true FROM numbers(8000)")
    assert store.apply_predictions_ttl(3600).change == "set"
    store._command("age rows", "ALTER TABLE predictions UPDATE stored_at = now() - 100000 WHERE 1 "
                   "SETTINGS mutations_sync = 1")
    store._command("merge", "OPTIMIZE TABLE predictions FINAL")
    assert store._rows("n", "SELECT count() FROM predictions")[0][0] == 0
    removed = store.apply_predictions_ttl(0)
    assert removed.change == "removed" and len(removed.refilled) == 8000
    assert store._rows("n", "SELECT count() FROM example_sets FINAL")[0][0] == 0
    assert store.reconcile_example_sets() == []
