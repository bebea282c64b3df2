"""Analyst queries on real chDB rows: leaderboard (latest vs best, sets, pagination), compare and flips."""

from __future__ import annotations

import pytest

from budeval.storage.clickhouse import ClickHouseStore
from budeval.storage.queries import LeaderboardRow

from .fakes import MemoryRun, metric, simple_run, status


@pytest.fixture
def history(store: ClickHouseStore) -> ClickHouseStore:
    """Model m1 improved then regressed on qa; m2 steady; m3 only on mcq; one failed (None) newest m2 run."""
    store.store_run("ev-1", "r0", simple_run("20260101_000000", {("m1", "qa"): 40.0, ("m2", "qa"): 60.0}))
    store.store_run("ev-2", "r0", simple_run("20260201_000000", {("m1", "qa"): 80.0, ("m1", "mcq"): 30.0}))
    store.store_run("ev-3", "r0", simple_run("20260301_000000", {("m1", "qa"): 50.0, ("m3", "mcq"): 90.0}))
    store.store_run("ev-4", "r0", simple_run("20260401_000000", {("m2", "qa"): None, ("m2", "mcq"): 70.0}))
    return store


def _by_model(rows: list[LeaderboardRow]) -> dict[str, float]:
    return {r.model: r.score for r in rows}


def test_leaderboard_latest_takes_each_models_newest_scored_run(history: ClickHouseStore) -> None:
    rows = history.leaderboard(["qa"], mode="latest")
    assert [(r.rank, r.model, r.score) for r in rows] == [(1, "m2", 60.0), (2, "m1", 50.0)]
    assert rows[1].eval_ids == {"qa": "ev-3"}  # m2's newest qa run failed (None): its last score stands


def test_leaderboard_best_takes_each_models_top_score(history: ClickHouseStore) -> None:
    rows = history.leaderboard(["qa"], mode="best")
    assert [(r.rank, r.model, r.score) for r in rows] == [(1, "m1", 80.0), (2, "m2", 60.0)]
    assert rows[0].eval_ids == {"qa": "ev-2"}


def test_leaderboard_over_a_set_ranks_by_coverage_then_mean(history: ClickHouseStore) -> None:
    rows = history.leaderboard(["qa", "mcq"], metric="accuracy", mode="latest")
    assert [r.model for r in rows] == ["m2", "m1", "m3"]
    assert rows[0].scores == {"qa": 60.0, "mcq": 70.0} and rows[0].score == 65.0 and rows[0].datasets == 2
    assert rows[1].scores == {"qa": 50.0, "mcq": 30.0} and rows[1].score == 40.0
    assert rows[2].datasets == 1
    assert history.leaderboard(["qa"], metric="f1") == []
    # the service's one-dataset keyword and no dataset at all (every dataset)
    assert _by_model(history.leaderboard(dataset="mcq")) == {"m3": 90.0, "m2": 70.0, "m1": 30.0}
    assert [r.model for r in history.leaderboard()] == ["m2", "m1", "m3"]


def test_leaderboard_pages_do_not_overlap_and_keep_global_ranks(store: ClickHouseStore) -> None:
    scores = {(f"model-{i:02d}", "qa"): float(i) for i in range(12)}
    store.store_run("ev-page", "r0", simple_run("20260101_000000", scores))
    pages = [store.leaderboard(["qa"], limit=5, offset=o) for o in (0, 5, 10, 15)]
    assert [len(p) for p in pages] == [5, 5, 2, 0]
    flat = [r for p in pages for r in p]
    assert [r.rank for r in flat] == list(range(1, 13))
    assert [r.model for r in flat] == [f"model-{i:02d}" for i in range(11, -1, -1)]


def test_compare_gives_per_dataset_deltas_for_the_same_models(history: ClickHouseStore) -> None:
    rows = {(r.model_a, r.model_b, r.dataset): r for r in history.compare("ev-2", "ev-3")}
    assert rows[("m1", "m1", "qa")].delta == pytest.approx(-30.0)
    assert rows[("m1", None, "mcq")].score_b is None and rows[("m1", None, "mcq")].delta is None
    assert rows[(None, "m3", "mcq")].score_b == 90.0


def test_compare_pairs_two_checkpoints_with_different_names(store: ClickHouseStore) -> None:
    store.store_run(
        "ck-1000", "r0", simple_run("20260101_000000", {("ckpt-1000", "qa"): 70.0, ("ckpt-1000", "mcq"): 20.0})
    )
    store.store_run(
        "ck-2000", "r0", simple_run("20260102_000000", {("ckpt-2000", "qa"): 55.5, ("ckpt-2000", "mcq"): 25.0})
    )
    rows = {r.dataset: r for r in store.compare("ck-1000", "ck-2000")}
    assert rows["qa"].model_a == "ckpt-1000" and rows["qa"].model_b == "ckpt-2000"
    assert rows["qa"].delta == pytest.approx(-14.5)
    assert rows["mcq"].delta == pytest.approx(5.0)


def test_flips_list_examples_that_changed_verdict_both_ways(store: ClickHouseStore) -> None:
    store.store_run(
        "ck-a",
        "r0",
        simple_run(
            "20260101_000000",
            {("ckpt-a", "qa"): 50.0, ("ckpt-a", "mcq"): 50.0},
            {("ckpt-a", "qa"): [True, True, False, False], ("ckpt-a", "mcq"): [True, False]},
        ),
    )
    store.store_run(
        "ck-b",
        "r0",
        simple_run(
            "20260102_000000",
            {("ckpt-b", "qa"): 50.0, ("ckpt-b", "mcq"): 50.0},
            {("ckpt-b", "qa"): [True, False, True, False], ("ckpt-b", "mcq"): [False, False]},
        ),
    )
    flips = store.flips("ck-a", "ck-b")
    assert [(f.dataset, f.example_index, f.direction) for f in flips] == [
        ("mcq", 0, "correct_to_wrong"),
        ("qa", 1, "correct_to_wrong"),
        ("qa", 2, "wrong_to_correct"),
    ]
    assert flips[1].model_a == "ckpt-a" and flips[1].model_b == "ckpt-b" and flips[1].gold == "gold 1"
    assert [f.example_index for f in store.flips("ck-a", "ck-b", dataset="qa")] == [1, 2]
    assert len(store.flips("ck-a", "ck-b", limit=1)) == 1
    summary = {
        s.dataset: (s.compared, s.correct_to_wrong, s.wrong_to_correct) for s in store.flip_summary("ck-a", "ck-b")
    }
    assert summary == {"qa": (4, 1, 1), "mcq": (2, 1, 0)}


def test_flips_match_models_by_name_when_both_sides_hold_several(store: ClickHouseStore) -> None:
    def run(ts: str, verdicts: dict[str, list[bool]]) -> MemoryRun:
        base = simple_run(ts, {(m, "qa"): 1.0 for m in verdicts}, {(m, "qa"): v for m, v in verdicts.items()})
        return base

    store.store_run("two-a", "r0", run("20260101_000000", {"x": [True, True], "y": [False, False]}))
    store.store_run("two-b", "r0", run("20260102_000000", {"x": [True, False], "y": [False, True]}))
    got = {(f.model_a, f.model_b, f.example_index, f.direction) for f in store.flips("two-a", "two-b")}
    assert got == {("x", "x", 1, "correct_to_wrong"), ("y", "y", 1, "wrong_to_correct")}
    # examples without a verdict on either side never count as flips
    store.store_run("unjudged", "r0", MemoryRun("20260103_000000", [metric("x", "qa", 1.0)], [status("x", "qa")], []))
    assert store.flips("two-a", "unjudged") == []
