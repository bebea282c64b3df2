"""Every SQL example in docs/analysts.md runs on real rows and returns something (the docs stay true)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from budeval.storage.base import EvaluationRecord
from budeval.storage.clickhouse import ClickHouseStore

from .fakes import MemoryRun, metric, simple_run, status

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"
BLOCKS = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_doc_has_sql_examples() -> None:
    assert len(BLOCKS) >= 10


@pytest.fixture
def filled(store: ClickHouseStore) -> ClickHouseStore:
    for step, (eval_id, model, ts, qa, verdicts) in enumerate(
        [
            ("ck-1000", "ckpt-1000", "20260101_000000", 70.0, [True, True, False, False]),
            ("ck-2000", "ckpt-2000", "20260102_000000", 55.0, [True, False, True, False]),
        ],
        start=1,
    ):
        run = simple_run(ts, {(model, "qa"): qa, (model, "mcq"): 20.0 * step}, {(model, "qa"): verdicts})
        store.store_run(eval_id, "r0", run)
        store.record_evaluation(
            EvaluationRecord(
                eval_id=eval_id,
                experiment_id="exp-1",
                status="completed",
                model_name=model,
                datasets=["qa", "mcq"],
                labels={"step": str(step * 1000)},
                created_at=datetime(2026, 1, step, tzinfo=UTC),
                model_commit=f"sha256:{step}",
                engine_version="0.5.4",
                gpu_type="NVIDIA A100-SXM4-80GB",
                gpu_count=1,
                provenance={
                    "opencompass_versions": {"r0": "0.5.4"},
                    "budeval_version": "0.1.0",
                    "dataset_versions": {"qa": "x"},
                    "environments": {"r0": {"torch": "2.13.0", "node": "gpu-node-1"}},
                },
            )
        )
    failed = MemoryRun("20260103_000000", [metric("other", "qa", None)], [status("other", "qa", "failed")])
    store.store_run("ev-failed", "r0", failed)
    return store


@pytest.mark.parametrize("sql", BLOCKS, ids=[b.split("\n")[0][:40] for b in BLOCKS])
def test_each_analyst_query_runs_and_returns_rows(filled: ClickHouseStore, sql: str) -> None:
    rows = filled._rows("analyst example", sql.replace("%", "%%"))
    assert rows, sql
