"""Judges in the store (migration 10): judge answers beside predictions, the evaluation's judge and its link to the
evaluation it re-judged, and the stored predictions a re-judging run replays -- on real chDB."""

from __future__ import annotations

from pathlib import Path

import pytest

from budeval.storage.base import EvaluationRecord
from budeval.storage.clickhouse import ClickHouseStore
from budeval.storage.factory import open_store
from budeval.storage.migrations import MIGRATIONS
from tests.storage.fakes import Example, MemoryRun, metric, status


def judged_run() -> MemoryRun:
    examples = [
        Example("m", "jq", 0, True, prediction="Paris.", gold="Paris", prompt="HUMAN: Capital of France?",
                judge_answer="A"),
        Example("m", "jq", 1, False, prediction="7", gold="8", prompt="HUMAN: Legs of a spider?",
                judge_answer="B. The answer is wrong."),
        Example("m", "jq", 2, False, prediction="blue", gold="Blue", prompt="HUMAN: Capital of France?",
                judge_answer="???"),
        Example("m", "other", 0, True, prediction="x", prompt="HUMAN: other"),
    ]
    return MemoryRun("20261201_100000", [metric("m", "jq", 33.3), metric("m", "other", 100.0)],
                     [status("m", "jq"), status("m", "other")], examples)


def test_judge_answers_are_stored_beside_predictions_and_replayed_in_order(store: ClickHouseStore) -> None:
    store.store_run("e1", "r0", judged_run())
    rows = store._rows(
        "judge answers",
        "SELECT example_index, correct, judge_answer FROM predictions FINAL WHERE eval_id = 'e1' AND dataset = 'jq'"
        " ORDER BY example_index",
    )
    assert [tuple(r) for r in rows] == [(0, True, "A"), (1, False, "B. The answer is wrong."), (2, False, "???")]
    # A prompt asked twice keeps its predictions in example order; other datasets and models are not replayed.
    assert store.replay_answers("e1", "m", ["jq"]) == {
        "HUMAN: Capital of France?": ["Paris.", "blue"],
        "HUMAN: Legs of a spider?": ["7"],
    }
    assert store.replay_answers("e1", "someone-else", ["jq"]) == {}
    assert store.replay_answers("nope", "m", ["jq"]) == {}
    # A reused evaluation's copy carries the judge answers too.
    store.copy_results("e1", "e2")
    assert store.replay_answers("e2", "m", ["jq"]) == store.replay_answers("e1", "m", ["jq"])


def test_evaluation_row_keeps_its_judge_and_the_evaluation_it_rejudged(store: ClickHouseStore) -> None:
    store.record_evaluation(EvaluationRecord(eval_id="first", status="completed", judge="j@abc/t:123"))
    store.record_evaluation(
        EvaluationRecord(eval_id="second", status="completed", judge="j2@def/t:456", rejudge_of="first")
    )
    first, second = store.get_evaluation("first"), store.get_evaluation("second")
    assert first is not None and (first.judge, first.rejudge_of) == ("j@abc/t:123", None)
    assert second is not None and (second.judge, second.rejudge_of) == ("j2@def/t:456", "first")
    rows = store._rows("view", "SELECT eval_id, judge, rejudge_of FROM evaluations_current ORDER BY eval_id")
    assert [tuple(r) for r in rows] == [("first", "j@abc/t:123", None), ("second", "j2@def/t:456", "first")]


def test_migration_10_upgrades_a_store_with_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store at schema 6 holding a prediction and an evaluation is upgraded: old rows read with no judge."""
    from budeval.storage import clickhouse_migrate as clickhouse

    old = open_store(f"chdb://{tmp_path / 'ch'}")
    try:
        monkeypatch.setattr(clickhouse, "MIGRATIONS", tuple(m for m in MIGRATIONS if m.version <= 6))
        old.migrate()
        old._command(
            "old rows",
            "INSERT INTO predictions (eval_id, run_id, model, dataset, example_index, prompt, prediction, gold)"
            " VALUES ('before', 'r0', 'm', 'd', 0, 'p', 'a', 'g')",
        )
        old._command(
            "old row",
            "INSERT INTO evaluations (eval_id, status, provenance, labels, updated_at, row_version)"
            " VALUES ('before', 'completed', '{}', map(), now64(6), 1)",
        )
        monkeypatch.undo()
        assert "0010_judges" in old.migrate()
        before = old.get_evaluation("before")
        assert before is not None and (before.judge, before.rejudge_of) == ("", None)
        rows = old._rows("old prediction", "SELECT judge_answer FROM predictions WHERE eval_id = 'before'")
        assert [tuple(r) for r in rows] == [("",)]
        assert old.replay_answers("before", "m", ["d"]) == {"p": ["a"]}
    finally:
        old.close()
