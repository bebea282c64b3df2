"""The store's write side on real chDB: idempotent runs, streamed predictions, evaluation rows, parser errors."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from budeval.errors import ResultParseError
from budeval.schemas.results import PredictionBatch
from budeval.storage.base import EvaluationRecord
from budeval.storage.clickhouse import ClickHouseStore
from tests.support import in_threads

from .fakes import Example, MemoryRun, metric, simple_run, status

ALL_TABLES = ("scores", "dataset_status", "predictions")


def _snapshot(store: ClickHouseStore, eval_id: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of ``eval_id`` per table, but when it was stored: ``predictions.stored_at`` (the TTL's clock, a
    ``now()`` in seconds) is renewed by a re-store, and two stores a second apart would differ in it alone."""
    def columns(table: str) -> str:
        return "* EXCEPT (stored_at)" if table == "predictions" else "*"

    return {
        table: sorted(store._rows("snapshot", f"SELECT {columns(table)} FROM {table} WHERE eval_id = %(e)s",
                                  {"e": eval_id}), key=repr)
        for table in ALL_TABLES
    }


def test_storing_the_same_run_twice_yields_the_same_rows(store: ClickHouseStore) -> None:
    run = simple_run(
        "20261123_081443",
        {("m1", "ds1"): 50.0, ("m1", "ds2"): None},
        {("m1", "ds1"): [True, False, True, True]},
    )
    first = store.store_run("e1", "r0", run)
    before = _snapshot(store, "e1")
    second = store.store_run("e1", "r0", run)
    after = _snapshot(store, "e1")
    assert first == second
    assert (first.metrics, first.predictions) == (2, 4)
    assert before == after
    for table in ALL_TABLES:
        # count() without FINAL: no duplicate waits for a merge
        assert store.count(table, "e1") == store.count(table, "e1", final=True) == len(before[table]) > 0


def test_restoring_a_run_replaces_its_rows_and_leaves_other_runs_alone(store: ClickHouseStore) -> None:
    store.store_run("e1", "r0", simple_run("20261123_081443", {("m", "a"): 10.0}, {("m", "a"): [True] * 5}))
    store.store_run("e1", "r1", simple_run("20261123_081443", {("m", "b"): 20.0}, {("m", "b"): [False] * 3}))
    store.store_run("e1", "r0", simple_run("20261123_090000", {("m", "a"): 11.0}, {("m", "a"): [True, False]}))
    scores = {(r.run_id, r.dataset): r.score for r in store.results("e1")}
    assert scores == {("r0", "a"): 11.0, ("r1", "b"): 20.0}
    assert store.count("predictions", "e1") == 2 + 3


def test_predictions_stream_in_many_batches_with_their_values(store: ClickHouseStore) -> None:
    store.batch_size = 7
    examples = [
        Example(
            "m",
            "ds",
            i,
            [True, False, None][i % 3],
            prediction=f"p{i}",
            gold=f"g{i}",
            prompt=f"[{{'role': 'HUMAN'}}] {i}",
        )
        for i in range(100)
    ]
    run = MemoryRun("20261123_081443", [metric("m", "ds", 33.0)], [status("m", "ds")], examples)
    report = store.store_run("e2", "r0", run)
    assert report.predictions == 100
    assert run.batches_served == 1
    rows = store._rows(
        "read",
        "SELECT example_index, prompt, prediction, gold, correct FROM predictions WHERE eval_id = 'e2' ORDER BY 1",
    )
    assert [r[0] for r in rows] == list(range(100))
    assert rows[4] == (4, "[{'role': 'HUMAN'}] 4", "p4", "g4", False)
    assert [r[4] for r in rows[:3]] == [True, False, None]


def test_results_carry_status_and_none_for_missing_scores(store: ClickHouseStore) -> None:
    run = MemoryRun(
        "20261123_081443",
        [metric("good", "qa", 75.0), metric("bad", "qa", None)],
        [status("good", "qa"), status("bad", "qa", "failed"), status("good", "unscored", "failed")],
    )
    store.store_run("e3", "r0", run)
    rows = {(r.model, r.dataset): r for r in store.results("e3")}
    assert rows[("good", "qa")].score == 75.0 and rows[("good", "qa")].status == "ok"
    assert rows[("bad", "qa")].score is None and rows[("bad", "qa")].status == "failed"
    # a (model, dataset) the summary does not list still shows up, with no metric
    assert rows[("good", "unscored")].metric == "" and rows[("good", "unscored")].status == "failed"
    assert {s.status for s in store.statuses("e3")} == {"ok", "failed"}
    assert store.results("nope") == []


@pytest.mark.parametrize("batch_size", [3, 4, 7, 100])
def test_one_batch_inline_or_many_in_parallel_store_the_same_rows(store: ClickHouseStore, batch_size: int) -> None:
    # 7 examples: batch sizes 3 and 4 take the parallel path (full first batch, or a short one followed by more),
    # 7 a full single batch, 100 a short single batch (inserted inline).
    flags = [True, False, True, True, False, False, True]
    run = simple_run("20261123_081443", {("m", "ds"): 57.1}, {("m", "ds"): flags})
    store.batch_size = batch_size
    report = store.store_run("eb", "r0", run)
    assert report.predictions == 7 and store.count("predictions", "eb") == 7
    rows = store._rows("read", "SELECT example_index, correct FROM predictions WHERE eval_id = 'eb' ORDER BY 1")
    assert [bool(c) for _, c in rows] == flags and [int(i) for i, _ in rows] == list(range(7))


class _BrokenRun(MemoryRun):
    def prediction_batches(self, batch_size: int = 50_000) -> Iterator[PredictionBatch]:
        yield PredictionBatch(["m"], ["ds"], [0], ["p"], ["x"], ["g"], [True])
        raise ResultParseError("truncated JSON", path="predictions/m/ds_1.json", line=3)


def test_a_parser_error_reaches_the_caller_unchanged_and_a_retry_cleans_up(store: ClickHouseStore) -> None:
    broken = _BrokenRun("20261123_081443", [metric("m", "ds", 1.0)], [status("m", "ds")])
    with pytest.raises(ResultParseError, match=r"predictions/m/ds_1.json:3"):
        store.store_run("e4", "r0", broken)
    good = simple_run("20261123_081443", {("m", "ds"): 1.0}, {("m", "ds"): [True, True]})
    store.store_run("e4", "r0", good)
    assert store.count("predictions", "e4") == 2


def test_evaluation_rows_latest_write_wins_and_find_reusable_picks_newest_completed(store: ClickHouseStore) -> None:
    base = EvaluationRecord(eval_id="old", status="completed", params_hash="h", model_name="m", labels={"team": "x"})
    store.record_evaluation(base.model_copy(update={"finished_at": datetime(2026, 1, 1, tzinfo=UTC)}))
    store.record_evaluation(base.model_copy(update={"eval_id": "new", "finished_at": datetime(2026, 2, 1, tzinfo=UTC)}))
    store.record_evaluation(base.model_copy(update={"eval_id": "newest-failed", "status": "failed"}))
    found = store.find_reusable("h")
    assert found is not None and found.eval_id == "new"
    assert found.finished_at == datetime(2026, 2, 1, tzinfo=UTC)
    assert found.labels == {"team": "x"}
    store.record_evaluation(base.model_copy(update={"eval_id": "new", "status": "cancelled", "provenance": {"k": [1]}}))
    again = store.get_evaluation("new")
    assert again is not None and again.status == "cancelled" and again.provenance == {"k": [1]}
    assert store.count("evaluations", "new", final=True) == 1
    latest = store.find_reusable("h")
    assert latest is not None and latest.eval_id == "old"
    assert store.find_reusable("other") is None
    assert store.get_evaluation("absent") is None


class _Tracked(list):  # type: ignore[type-arg]
    """A list that can be weakly referenced: shows when a batch's columns are really freed."""


def test_stored_batches_are_freed_without_waiting_for_the_garbage_collector(store: ClickHouseStore) -> None:
    refs: list[weakref.ref[_Tracked]] = []

    class Run(MemoryRun):
        def prediction_batches(self, batch_size: int = 50_000) -> Iterator[PredictionBatch]:
            for k in range(6):
                prompts = _Tracked(f"prompt {k}-{i}" for i in range(1000))
                refs.append(weakref.ref(prompts))
                yield PredictionBatch(
                    ["m"] * 1000,
                    [f"ds{k}"] * 1000,
                    list(range(1000)),
                    prompts,
                    ["p"] * 1000,
                    ["g"] * 1000,
                    [None] * 1000,
                )

    gc.collect()
    gc.disable()  # a batch kept alive by a reference cycle would survive until a full collection
    try:
        report = store.store_run("e9", "r0", Run("20261123_081443", [metric("m", "ds0", 1.0)], [status("m", "ds0")]))
        alive = [r for r in refs if r() is not None]
    finally:
        gc.enable()
    assert report.predictions == 6000 and len(refs) == 6
    assert alive == []


def test_concurrent_small_runs_and_evaluation_rows_share_inserts_and_each_lands_once(store: ClickHouseStore) -> None:
    runs = {
        f"c{i}": simple_run("20261123_081443", {("m", f"ds{i}"): float(i)}, {("m", f"ds{i}"): [True] * (i + 1)})
        for i in range(12)
    }

    def work(eval_id: str) -> None:
        store.record_evaluation(EvaluationRecord(eval_id=eval_id, status="running", params_hash="h", model_name="m"))
        store.store_run(eval_id, "r0", runs[eval_id])
        store.store_run("same", "r0", runs["c3"])  # one (eval, run) stored by every thread at once
        store.record_evaluation(EvaluationRecord(eval_id=eval_id, status="completed", params_hash="h", model_name="m"))

    errors = in_threads(work, list(runs))
    assert not errors, errors
    for i, eval_id in enumerate(runs):
        assert store.count("predictions", eval_id) == i + 1
        assert [(r.dataset, r.score) for r in store.results(eval_id)] == [(f"ds{i}", float(i))]
        record = store.get_evaluation(eval_id)
        assert record is not None and record.status == "completed"
    assert store.count("predictions", "same") == 4 and store.count("scores", "same") == 1
    # 12 threads x 4 writes, every one through a group commit (how they split into batches depends on timing).
    assert sum(store._commits.batch_sizes) == 48


def test_a_statement_clickhouse_refuses_is_terminal_and_tried_once(store: ClickHouseStore) -> None:
    """An unknown table or a syntax error fails at once (terminal, never retried by the workflow); only errors a retry
    can cure (no connection, timeouts, server trouble) are transient."""
    from budeval.errors import StoreQueryError, StoreUnavailableError, TerminalError
    from budeval.storage.clickhouse import store_error
    from budeval.workflow.policies import _terminal_error_names

    for sql in ("SELECT * FROM no_such_table", "SELEKT 1", "SELECT no_such_column FROM scores"):
        with pytest.raises(StoreQueryError) as caught:
            store._rows("bad statement", sql)
        assert isinstance(caught.value, TerminalError) and "failed at" in str(caught.value)
    assert "StoreQueryError" in _terminal_error_names()  # the workflow's retry policy lists it as non-retryable
    assert isinstance(store_error("x", "w", OSError("Connection refused")), StoreUnavailableError)
    assert isinstance(store_error("x", "w", RuntimeError("Code: 159. Timeout exceeded")), StoreUnavailableError)
def test_a_reused_evaluation_gets_its_own_copy_of_the_score_rows(store: ClickHouseStore) -> None:
    run = simple_run("20261123_081443", {("m", "a"): 40.0, ("m", "b"): None}, {("m", "a"): [True, False]})
    store.store_run("orig", "r0", run)
    store.record_evaluation(EvaluationRecord(eval_id="orig", status="completed", model_name="m"))
    assert store.copy_results("orig", "again", "m2") == 2
    assert store.copy_results("orig", "again", "m2") == 2  # a retried step replaces its copy
    assert store.count("scores", "again") == store.count("scores", "again", final=True) == 2
    assert store.count("dataset_status", "again") == store.count("dataset_status", "orig") > 0
    copied = {(r.run_id, r.model, r.dataset, r.metric): (r.score, r.status) for r in store.results("again")}
    original = {(r.run_id, "m2", r.dataset, r.metric): (r.score, r.status) for r in store.results("orig")}
    assert copied == original
    assert {r.model for r in store.results("orig")} == {"m"}  # the source is untouched
    store.record_evaluation(EvaluationRecord(eval_id="again", status="reused", model_name="m2", reused_from="orig"))
    board = store.leaderboard(dataset="a")
    assert {(row.model, row.eval_ids["a"]) for row in board} == {("m", "orig"), ("m2", "again")}
