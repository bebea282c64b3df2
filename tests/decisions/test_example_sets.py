"""The example sets (``example_sets``, migration 7) decide exactly what the prediction rows decide: the gate and the
series computed both ways -- from the sets, and with ``decisions_from_sets = False`` from the rows -- on the same
store (real OpenCompass output through the real reader and the extraction step, planted checkpoint histories) are
identical, also after an idempotent re-extraction, ``extract --force`` replacing a run with other output, a re-run's
supersede (rows deleted, new rows stored) and a reuse's copy; and the bitmaps always equal what the rows say."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from budeval.config import Settings
from budeval.decisions.gate import evaluate_gate
from budeval.decisions.series import build_series
from budeval.engine.results import parse_run
from budeval.storage.base import EvaluationRecord
from budeval.storage.clickhouse import ClickHouseStore
from budeval.storage.factory import open_store
from budeval.storage.migrations import MIGRATIONS
from budeval.workflow.steps import extract_folder

from .support import OPENCOMPASS, REALWORLD, PlantedRun, Row, both_ways, planted, record, record_fixture, verdicts

#: per example its verdicts over four checkpoints (R right, W wrong): every kind, and flips of the forgotten
HISTORIES = ("RRRR", "WWWW", "WRRR", "WWWR", "RRWW", "WRWR", "RWRW", "RWWR", "WRRW", "WWRW", "RRRW", "RWRR")
STEPS = (100, 200, 300, 400)


def _checkpoint(k: int) -> PlantedRun:
    rows: list[Row] = [("qa", i, 0, h[k] == "R", None) for i, h in enumerate(HISTORIES)]
    rows += [("big", i, 0, (i * 7 + k * 13) % 10 < 4 + k, None) for i in range(300)]
    return PlantedRun(rows, model=f"ckpt-{STEPS[k]}")




def _sets_say_what_rows_say(store: ClickHouseStore) -> None:
    """Every group's three bitmaps equal the same sets computed from ``predictions FINAL`` (no group more or less)."""
    def read(sql: str) -> set[tuple[Any, ...]]:
        return {(*r[:5], tuple(r[5]), tuple(r[6]), tuple(r[7])) for r in store._rows("compare sets", sql)}

    groups = "eval_id, dataset, model, run_id, replica"
    from_sets = read(f"SELECT {groups}, bitmapToArray(judged), bitmapToArray(judged_right), "
                     f"bitmapToArray(scored_only) FROM example_sets FINAL")
    from_rows = read(f"""
        SELECT {groups}, arraySort(groupArrayIf(example_index, correct IS NOT NULL)),
               arraySort(groupArrayIf(example_index, ifNull(correct, false))),
               arraySort(groupArrayIf(example_index, correct IS NULL AND isFinite(ifNull(score, nan))))
        FROM predictions FINAL GROUP BY {groups}""")
    assert from_sets == from_rows
    assert from_rows


def _decisions(store: ClickHouseStore) -> dict[str, Any]:
    """Gate and series both ways; the sets were read for them (not a silent fallback)."""
    assert store._paired_from_sets("ck-100", "ck-400") is not None
    checkpoints = store.series_checkpoints("run-7")
    assert store._series_from_sets(checkpoints, None, 3) is not None
    _sets_say_what_rows_say(store)
    return {
        "gate-series": both_ways(store, lambda: evaluate_gate(store, "ck-100", "ck-400")),
        "gate-real": both_ways(store, lambda: evaluate_gate(store, "mcq-a", "mcq-b")),
        "gate-best": both_ways(store, lambda: evaluate_gate(store, "best:run-7", "ck-200")),
        "series": both_ways(store, lambda: build_series(store, "run-7", limit=3)),
        "series-qa": both_ways(store, lambda: build_series(store, "run-7", dataset="qa", limit=2)),
        "series-none-listed": both_ways(store, lambda: build_series(store, "run-7", limit=0)),
    }


def test_gate_and_series_from_sets_equal_the_rows_through_reextraction_force_supersede_and_copy(
    store: ClickHouseStore, tmp_path: Path
) -> None:
    for k in (2, 0, 3, 1):
        record(store, f"ck-{STEPS[k]}", _checkpoint(k), checkpoint=("run-7", STEPS[k], None), order=k)
    record_fixture(store, "mcq-a", OPENCOMPASS / "mcq")
    record_fixture(store, "mcq-b", OPENCOMPASS / "mcq")
    first = _decisions(store)
    series = first["series"]
    qa = next(d for d in series["datasets"] if d["dataset"] == "qa")
    assert qa["kinds"] == {"easy": 1, "hard": 1, "learned": 2, "forgotten": 5, "unstable": 3}
    assert qa["flips"] == sum(sum(a != b for a, b in itertools.pairwise(h)) for h in HISTORIES)
    assert [e["example_index"] for e in qa["examples"]["learned"]] == [3, 2]  # latest learned first
    forgotten = [(e["example_index"], e["first_right_position"]) for e in qa["examples"]["forgotten"]]
    assert forgotten == [(4, 0), (6, 0), (8, 1)]
    assert first["gate-real"]["datasets"][0]["method"] == "mcnemar"

    # re-extraction of the same evaluation (the extraction step, forced over the workflow's row): same rows, same
    # sets, same decisions
    settings = Settings.from_env()
    rows_before = store.count("predictions", "mcq-b", final=True)
    for _ in range(2):
        extract_folder(store=store, parse=parse_run, settings=settings, eval_id="mcq-b", run_id="r0",
                       run_dir=OPENCOMPASS / "mcq", force=True)
    assert store.count("predictions", "mcq-b", final=True) == rows_before
    assert _decisions(store)["gate-real"] == first["gate-real"]

    # extract --force with other output into the run: the old examples leave the sets with the rows
    extract_folder(store=store, parse=parse_run, settings=settings, eval_id="mcq-b", run_id="r0",
                   run_dir=OPENCOMPASS / "two_datasets_one_fails", force=True)
    forced = _decisions(store)
    assert forced["gate-real"][0] == "refused"  # the example sets differ now: both ways refuse alike
    extract_folder(store=store, parse=parse_run, settings=settings, eval_id="mcq-b", run_id="r0",
                   run_dir=OPENCOMPASS / "mcq", force=True)
    assert _decisions(store)["gate-real"] == first["gate-real"]

    # a re-run supersedes an attempt (rows deleted, as supersede_attempt does) and stores other verdicts; a
    # checkpoint stored again with another's rows replaces them
    store.clear_results("ck-400")
    record(store, "ck-400", _checkpoint(1), checkpoint=("run-7", 400, None), order=3)
    store.store_run("ck-300", "r0", _checkpoint(0))  # type: ignore[arg-type]
    superseded = _decisions(store)
    assert superseded["series"] != series
    assert superseded["gate-series"]["datasets"] != first["gate-series"]["datasets"]

    # a reused evaluation's copy
    store.record_evaluation(EvaluationRecord(eval_id="mcq-c", status="reused", reused_from="mcq-a"))
    for _ in range(2):  # a retried copy replaces the first
        store.copy_results("mcq-a", "mcq-c", "other-model")
    _sets_say_what_rows_say(store)
    both_ways(store, lambda: evaluate_gate(store, "mcq-a", "mcq-c"))
    assert store._paired_from_sets("mcq-a", "mcq-c") is not None


def test_planted_regression_and_different_example_sets_from_sets(store: ClickHouseStore) -> None:
    base, cand = planted(2000, 1600, losses=100, gains=20)
    record(store, "base", PlantedRun(verdicts("qa", base) + verdicts("mcq", [i % 3 == 0 for i in range(500)])))
    record(store, "cand", PlantedRun(verdicts("qa", cand) + verdicts("mcq", [i % 3 == 0 for i in range(500)])))
    record(store, "short", PlantedRun(verdicts("qa", cand[:1990]) + verdicts("mcq", [True] * 500)))
    assert store._paired_from_sets("base", "cand") is not None
    report = both_ways(store, lambda: evaluate_gate(store, "base", "cand"))
    assert report["verdict"] == "regression"
    refused = both_ways(store, lambda: evaluate_gate(store, "base", "short"))
    assert refused[0] == "refused" and "10 only in the baseline" in refused[1]


@pytest.mark.parametrize(
    ("folder_a", "folder_b"),
    [
        (REALWORLD / "n-replicas" / "run", REALWORLD / "n-replicas" / "run_sampled"),  # replicas
        (REALWORLD / "numeric-per-example-score" / "run",) * 2,  # numeric scores
    ],
)
def test_replicas_and_numeric_scores_are_paired_from_the_rows(
    store: ClickHouseStore, folder_a: Path, folder_b: Path
) -> None:
    record_fixture(store, "a", folder_a)
    record_fixture(store, "b", folder_b)
    assert store._paired_from_sets("a", "b") is None
    assert both_ways(store, lambda: evaluate_gate(store, "a", "b"))["datasets"][0]["method"] == "bootstrap"
    _sets_say_what_rows_say(store)


def test_series_with_replicas_or_changing_example_sets_reads_the_rows(store: ClickHouseStore) -> None:
    for k in range(3):
        rows: list[Row] = [("qa", i, 0, (i + k) % 3 == 0, None) for i in range(10 + k)]  # a growing subset
        record(store, f"sub-{k}", PlantedRun(rows), checkpoint=("growing", k, None), order=k)
        reps: list[Row] = [("rep", i, r, (i + r + k) % 2 == 0, None) for i in range(8) for r in range(2)]
        record(store, f"rep-{k}", PlantedRun(reps), checkpoint=("replicas", k, None), order=k)
    for name in ("growing", "replicas"):
        assert store._series_from_sets(store.series_checkpoints(name), None, 3) is None
        both_ways(store, lambda name=name: build_series(store, name, limit=3))  # type: ignore[misc]


def test_migration_7_fills_the_sets_from_the_rows_stored_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from budeval.storage import clickhouse_migrate

    old = open_store(f"chdb://{tmp_path / 'ch'}")
    try:
        monkeypatch.setattr(clickhouse_migrate, "MIGRATIONS", MIGRATIONS[:6])
        old.migrate()
        assert old.schema_version() == 6
        old._command(  # rows written by the code of schema 6 (whose store_run knew no example_sets)
            "old rows",
            "INSERT INTO predictions (eval_id, run_id, model, dataset, example_index, replica, correct, score) "
            "SELECT 'ck-' || toString(k), 'r0', 'm', 'qa', i, 0, "
            "if(i % 5 = 4, NULL, (i + k) % 3 = 0), if(i % 5 = 4 AND k = 1, i / 2, NULL) "
            "FROM (SELECT number % 4 AS k, intDiv(number, 4) AS i FROM numbers(400))",
        )
        monkeypatch.undo()
        assert "0007_example_sets" in old.migrate()
        _sets_say_what_rows_say(old)
        assert old.migrate() == []
        old.store_run("ck-100", "r0", _checkpoint(3))  # type: ignore[arg-type]
        _sets_say_what_rows_say(old)
    finally:
        old.close()
