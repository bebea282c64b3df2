"""A series by the request's checkpoint block (columns checkpoint_series / checkpoint_step / checkpoint_tokens,
migration 6) on the real chDB store, and the fallback for evaluations stored without one (experiment_id + the step
label); ``budeval series SERIES``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from budeval.cli.main import main
from budeval.decisions.series import build_series
from budeval.errors import NotFoundError
from budeval.storage.clickhouse import ClickHouseStore
from budeval.storage.factory import open_store

from .support import PlantedRun, Row, record

#: qa verdicts per checkpoint (R right, W wrong) of four examples
HISTORY = ("WWWR", "WWRR", "WRRR", "RRRR")


def _rows(k: int) -> list[Row]:
    return [("qa", i, 0, HISTORY[k][i] == "R", None) for i in range(4)]


def test_series_by_the_checkpoint_columns(store: ClickHouseStore) -> None:
    # created out of order, with experiment ids and step labels that say otherwise: the columns decide
    for k, eval_id in ((2, "ck-c"), (0, "ck-a"), (3, "ck-d"), (1, "ck-b")):
        record(store, eval_id, PlantedRun(_rows(k)), experiment="unrelated", labels={"step": str(100 - k)},
               order=3 - k, checkpoint=("pretrain-1", 1000 * (k + 1), 10**9 * (k + 1) if k != 1 else None))
    cps = store.series_checkpoints("pretrain-1")
    assert [(c.eval_id, c.step, c.tokens_seen) for c in cps] == [
        ("ck-a", 1000, 10**9), ("ck-b", 2000, None), ("ck-c", 3000, 3 * 10**9), ("ck-d", 4000, 4 * 10**9)]
    # a checkpoint block takes its evaluation out of its experiment's fallback series
    with pytest.raises(NotFoundError, match="no finished evaluation in series 'unrelated'"):
        build_series(store, "unrelated")
    qa = build_series(store, "pretrain-1").datasets[0]
    assert [round(p.score) for p in qa.points] == [25, 50, 75, 100]
    assert [p.learned for p in qa.points] == [0, 1, 1, 1] and qa.kinds["learned"] == 3 and qa.kinds["easy"] == 1


def test_old_rows_join_by_experiment_and_step_label(store: ClickHouseStore) -> None:
    """Evaluations stored before the checkpoint columns (or sent without the block) are found by experiment_id and
    ordered by their step label, interleaved with new ones by step."""
    record(store, "old-0", PlantedRun(_rows(0)), experiment="run-7", labels={"step": "100"}, order=0)
    record(store, "new-1", PlantedRun(_rows(1)), checkpoint=("run-7", 200, None), order=5)
    record(store, "old-2", PlantedRun(_rows(2)), experiment="run-7", labels={"step": "300"}, order=1)
    record(store, "new-3", PlantedRun(_rows(3)), experiment="run-7", checkpoint=("run-7", 400, 7), order=2)
    record(store, "elsewhere", PlantedRun(_rows(3)), experiment="run-7", checkpoint=("run-8", 50, None), order=3)
    cps = store.series_checkpoints("run-7")
    assert [(c.eval_id, c.step) for c in cps] == [("old-0", 100), ("new-1", 200), ("old-2", 300), ("new-3", 400)]
    assert [c.eval_id for c in store.series_checkpoints("run-8")] == ["elsewhere"]


def test_cli_takes_the_series_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dsn = f"chdb://{tmp_path / 'cli'}"
    filled = open_store(dsn)  # chDB: one data dir per process at a time, closed before the CLI opens it
    filled.migrate()
    for k in range(4):
        record(filled, f"s-{k}", PlantedRun(_rows(k)), checkpoint=("sft-2", 10 * k, None), order=k)
    filled.close()
    capsys.readouterr()
    assert main(["series", "sft-2", "--store", dsn, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["series"] == "sft-2" and [c["step"] for c in body["checkpoints"]] == [0, 10, 20, 30]
    assert main(["series", "nope", "--store", dsn]) == 1
    assert "no finished evaluation in series 'nope'" in capsys.readouterr().err


def test_best_rule_finds_a_series_by_its_checkpoint_column(store: ClickHouseStore) -> None:
    for k in range(4):
        record(store, f"b-{k}", PlantedRun(_rows(k)), checkpoint=("pretrain-2", k, None), order=k)
    record(store, "b-old", PlantedRun(_rows(3)), experiment="pretrain-2", labels={"step": "9"}, order=9)
    record(store, "b-other", PlantedRun(_rows(3)), checkpoint=("pretrain-3", 1, None), order=9)
    assert store.resolve_baseline("best", "pretrain-2", exclude="") == "b-3"  # ties with b-old: eval id order
    assert store.resolve_baseline("best", "pretrain-2", exclude="b-3") == "b-old"  # experiment_id still matches
    assert store.resolve_baseline("best", "pretrain-9", exclude="") is None
