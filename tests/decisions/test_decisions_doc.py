"""Every SQL block of docs/decisions.md runs on real rows and agrees with what the code computes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from budeval.decisions.series import build_series
from budeval.storage.clickhouse import ClickHouseStore

from .support import PlantedRun, planted, record, verdicts

DOC = Path(__file__).resolve().parents[2] / "docs" / "decisions.md"
BLOCKS = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def filled(store: ClickHouseStore) -> ClickHouseStore:
    base, cand = planted(300, 200, losses=20, gains=5)
    third = [not x if i % 7 == 0 else x for i, x in enumerate(cand)]
    for k, (eval_id, flags) in enumerate((("ck-1000", base), ("ck-2000", cand), ("ck-3000", third))):
        rows = verdicts("qa", flags) + verdicts("mcq", flags[:40])
        # the first stored before the checkpoint columns (experiment + step label), the others with a checkpoint block
        old = {"experiment": "exp-1", "labels": {"step": str(1000 * (k + 1))}}
        new = {"checkpoint": ("exp-1", 1000 * (k + 1), None)}
        record(store, eval_id, PlantedRun(rows, model=f"ckpt-{k}"), order=k, **(new if k else old))  # type: ignore[arg-type]
    return store


def _query(store: ClickHouseStore, sql: str) -> list[tuple[object, ...]]:
    return store._rows("doc example", sql.replace("%", "%%"))


def test_the_doc_has_five_queries() -> None:
    assert len(BLOCKS) == 5


def test_gate_pairing_by_hand_matches_the_code(filled: ClickHouseStore) -> None:
    by_hand = {r[0]: r[1:6] for r in _query(filled, BLOCKS[0])}
    code = {p.dataset: (p.paired, p.only_baseline, p.only_candidate, p.losses, p.gains)
            for p in filled.paired_examples("ck-1000", "ck-2000")}
    assert by_hand == code and code["qa"] == (300, 0, 0, 20, 5)


def test_series_kinds_by_hand_match_the_code(filled: ClickHouseStore) -> None:
    rows = _query(filled, BLOCKS[1])
    counts: dict[tuple[object, object], int] = {}
    for dataset, _index, _oks, kind in rows:
        counts[(dataset, kind)] = counts.get((dataset, kind), 0) + 1
    report = build_series(filled, "exp-1")
    for ds in report.datasets:
        for kind, n in ds.kinds.items():
            assert counts.get((ds.dataset, kind), 0) == n, (ds.dataset, kind)


def test_learning_curve_by_hand_matches_the_code(filled: ClickHouseStore) -> None:
    rows = _query(filled, BLOCKS[2])
    report = build_series(filled, "exp-1")
    code = [(ds.dataset, p.step, p.examples, round(p.score, 2), p.learned, p.forgotten)
            for ds in report.datasets for p in ds.points]
    assert sorted(code) == sorted((r[0], int(r[1]), int(r[2]), float(r[3]), int(r[4]), int(r[5])) for r in rows)


def test_gate_pairing_from_the_example_sets_by_hand_matches_the_code(filled: ClickHouseStore) -> None:
    by_hand = {r[0]: r[1:6] for r in _query(filled, BLOCKS[3])}
    assert all(r[6] for r in _query(filled, BLOCKS[3]))
    filled.decisions_from_sets = False  # the code's row queries: the sets by hand agree with the rows
    code = {p.dataset: (p.paired, p.only_baseline, p.only_candidate, p.losses, p.gains)
            for p in filled.paired_examples("ck-1000", "ck-2000")}
    assert by_hand == code and code["qa"] == (300, 0, 0, 20, 5)


def test_learning_curve_from_the_example_sets_by_hand_matches_the_code(filled: ClickHouseStore) -> None:
    rows = _query(filled, BLOCKS[4])
    filled.decisions_from_sets = False
    report = build_series(filled, "exp-1")
    code = [(ds.dataset, p.step, p.examples, round(p.score, 2), p.learned, p.forgotten)
            for ds in report.datasets for p in ds.points]
    assert sorted(code) == sorted((r[0], int(r[1]), int(r[2]), float(r[3]), int(r[4]), int(r[5])) for r in rows)
