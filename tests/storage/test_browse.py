"""The store's browsing reads for the web UI (budeval/storage/clickhouse_browse.py) and the new options of the analyst
reads (leaderboard order, flip filters and paging) on the real chDB store: planted runs of known content."""

from __future__ import annotations

import pytest

from budeval.decisions.series import Checkpoint
from budeval.storage.browse_queries import ExampleFilter
from budeval.storage.clickhouse import ClickHouseStore
from tests.decisions.support import PlantedRun, planted, record, verdicts


@pytest.fixture
def filled(store: ClickHouseStore) -> ClickHouseStore:
    base, cand = planted(60, 40, losses=6, gains=2)
    record(store, "ev-a", PlantedRun(verdicts("qa", base) + verdicts("mcq", base[:10]), model="m-a"), model="m-a",
           order=1, checkpoint=("run", 100, None))
    record(store, "ev-b", PlantedRun(verdicts("qa", cand), model="m-b"), model="m-b", order=2,
           checkpoint=("run", 200, None))
    record(store, "ev-c", PlantedRun(verdicts("qa", [True] * 60), model="m-c"), model="m-c", order=3,
           experiment="exp-x")
    return store


def test_catalog_and_recent_evaluations(filled: ClickHouseStore) -> None:
    catalog = filled.catalog()
    assert catalog.datasets == ["mcq", "qa"] and catalog.metrics == ["accuracy"]
    assert catalog.models == ["m-a", "m-b", "m-c"] and catalog.series == ["exp-x", "run"]
    assert [e.eval_id for e in filled.recent_evaluations(2)] == ["ev-c", "ev-b"]


def test_examples_page_filters_and_pages(filled: ClickHouseStore) -> None:
    everything = filled.examples_page(ExampleFilter(), limit=1000)
    assert len(everything) == 70 + 60 + 60
    wrong_b = filled.examples_page(ExampleFilter(eval_id="ev-b", correct=False), limit=1000)
    assert {r.example_index for r in wrong_b} == {i for i, ok in enumerate(planted(60, 40, 6, 2)[1]) if not ok}
    assert filled.examples_page(ExampleFilter(eval_id="ev-b", unjudged=True)) == []
    found = filled.examples_page(ExampleFilter(text="QUESTION 7 of mcq"), limit=10)
    assert [(r.eval_id, r.dataset, r.example_index) for r in found] == [("ev-a", "mcq", 7)]
    assert [r.model for r in filled.examples_page(ExampleFilter(model="m-c"), limit=5)] == ["m-c"] * 5
    first, second = (filled.examples_page(ExampleFilter(dataset="qa"), limit=5, offset=o) for o in (0, 5))
    assert [r.example_index for r in first] == [0, 1, 2, 3, 4] and [r.example_index for r in second] == [5, 6, 7, 8, 9]


def test_paired_cells_agree_with_the_gate_pairing(filled: ClickHouseStore) -> None:
    [gate] = [p for p in filled.paired_examples("ev-a", "ev-b") if p.dataset == "qa"]
    cells = filled.paired_cells([(("ev-a", "m-a", "qa"), ("ev-b", "m-b", "qa")),
                                 (("ev-a", "m-a", "qa"), ("ev-c", "m-c", "qa")),
                                 (("ev-a", "m-a", "mcq"), ("ev-b", "m-b", "mcq"))])
    assert cells[0] is not None and cells[1] is not None
    same = ("paired", "only_baseline", "only_candidate", "single_verdicts", "losses", "gains", "mean_baseline",
            "mean_candidate", "diff_values", "diff_counts")
    assert {k: getattr(cells[0], k) for k in same} == {k: getattr(gate, k) for k in same}
    assert (cells[0].losses, cells[0].gains) == (6, 2)
    assert (cells[1].losses, cells[1].gains) == (0, 20)  # ev-c is right everywhere
    assert cells[2] is not None and cells[2].paired == 0 and cells[2].only_baseline == 10  # ev-b has no mcq


def test_series_matrix_and_example_history(filled: ClickHouseStore) -> None:
    checkpoints = filled.series_checkpoints("run")
    assert [c.eval_id for c in checkpoints] == ["ev-a", "ev-b"]
    rows, total = filled.series_matrix(checkpoints, "qa", limit=3, offset=1)
    assert total == 60 and [r.example_index for r in rows] == [1, 2, 3]
    assert rows[0].values == {0: 1.0, 1: 0.0}  # example 1: right in ev-a, lost in ev-b
    history = filled.example_history([c.eval_id for c in checkpoints], "qa", 1)
    assert [(h.eval_id, h.correct) for h in history] == [("ev-a", True), ("ev-b", False)]
    assert filled.series_matrix([Checkpoint(position=0, eval_id="nope")], None) == ([], 0)


def test_leaderboard_orders_and_flip_filters(filled: ClickHouseStore) -> None:
    ranked = filled.leaderboard(dataset="qa")
    assert [r.model for r in ranked] == ["m-c", "m-a", "m-b"]
    assert [r.model for r in filled.leaderboard(dataset="qa", sort="score")] == ["m-b", "m-a", "m-c"]
    assert [r.model for r in filled.leaderboard(dataset="qa", sort="model", descending=True)] == ["m-c", "m-b", "m-a"]
    assert [r.rank for r in filled.leaderboard(dataset="qa", sort="model")] == [2, 3, 1]  # ranks stay the ranking's
    with pytest.raises(ValueError):
        filled.leaderboard(sort="nope")  # type: ignore[arg-type]
    lost = filled.flips("ev-a", "ev-b", direction="correct_to_wrong", limit=100)
    assert [f.example_index for f in lost] == [0, 1, 2, 3, 4, 5]
    gained = filled.flips("ev-a", "ev-b", direction="wrong_to_correct", limit=100)
    assert [f.example_index for f in gained] == [40, 41]
    assert [f.example_index for f in filled.flips("ev-a", "ev-b", limit=3, offset=2)] == [2, 3, 4]
    assert [f.example_index for f in filled.flips("ev-a", "ev-b", text="question 41 of")] == [41]
