"""The series from the example sets equals the series from the prediction rows on any verdict history: random
checkpoint counts (1-6), examples per dataset (1-40), one or two datasets -- the second judged at any non-empty subset
of the checkpoints --, prompts that differ between checkpoints, every ``limit`` from 0, with and without a dataset
filter. The set query is written for ClickHouse's query analysis (budeval/storage/decision_queries.py
``series_sets_sql``: window functions over per-checkpoint bitmaps, the sums and lists the caller's); this is what
keeps it exact."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budeval.decisions.series import build_series
from budeval.storage.clickhouse import ClickHouseStore

from .support import PlantedRun, Row, both_ways, record

_SERIES = itertools.count()

#: per dataset a verdict matrix: checkpoints x examples (the same examples at every checkpoint: the sets' case)
histories = st.integers(1, 6).flatmap(
    lambda checkpoints: st.lists(
        st.integers(1, 40).flatmap(
            lambda examples: st.lists(
                st.lists(st.booleans(), min_size=examples, max_size=examples),
                min_size=checkpoints, max_size=checkpoints,
            )
        ),
        min_size=1, max_size=2,
    )
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories, limit=st.integers(0, 5), filtered=st.booleans(), second_at=st.sets(st.integers(0, 5)))
def test_series_from_sets_equals_series_from_rows(
    store: ClickHouseStore, history: list[list[list[bool]]], limit: int, filtered: bool, second_at: set[int]
) -> None:
    series = f"prop-{next(_SERIES)}"
    checkpoints = len(history[0])
    second_at = {k for k in second_at if k < checkpoints} or {checkpoints - 1}  # where ds1 (if any) was judged
    for k in range(checkpoints):
        rows: list[Row] = [
            (f"ds{d}", i, 0, ok, None) for d, matrix in enumerate(history) for i, ok in enumerate(matrix[k])
            if d == 0 or k in second_at
        ]
        # eval ids sorting against the training order: nothing may lean on the ids' order
        run = PlantedRun(rows, model=f"step-{k}", prompt_tag=f" (step {k})")
        record(store, f"{series}-{checkpoints - k}", run, order=k, checkpoint=(series, 100 * (k + 1), None))
    dataset = "ds0" if filtered else None
    known = store.series_checkpoints(series)
    assert store._series_from_sets(known, dataset, limit) is not None  # the sets were read, not a fallback
    report = both_ways(store, lambda: build_series(store, series, dataset=dataset, limit=limit))
    assert len(report["checkpoints"]) == checkpoints
    for shown in report["datasets"]:
        d = int(shown["dataset"][2:])
        judged_at = range(checkpoints) if d == 0 else sorted(second_at)
        matrix = [history[d][k] for k in judged_at]
        assert [p["position"] for p in shown["points"]] == list(judged_at)
        assert [p["examples"] for p in shown["points"]] == [len(row) for row in matrix]
        assert [round(p["score"], 9) for p in shown["points"]] == [
            round(100 * sum(row) / len(row), 9) for row in matrix
        ]
        assert sum(shown["kinds"].values()) == len(matrix[0])
        for listed in shown["examples"].values():  # the prompts of the dataset's latest checkpoint
            assert all(ex["prompt"].endswith(f"(step {judged_at[-1]})") for ex in listed), listed
