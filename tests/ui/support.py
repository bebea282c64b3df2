"""The UI tests' store: real OpenCompass outputs through the real reader (evaluation, compare, series, examples) plus
planted runs of known size for the leaderboard's paging, sorting and tiers (tests/decisions/support.py), and the
workflow states the evaluation page reads (a stand-in engine: the UI's own logic is under test, not the sidecar's)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from budeval.engine.results import parse_run
from budeval.storage.base import EvaluationRecord
from budeval.storage.clickhouse import ClickHouseStore
from tests.decisions.support import OPENCOMPASS, REALWORLD, PlantedRun, planted, record, record_fixture, verdicts
from tests.service.support import FakeState, StandInWorkflows, Status

SERIES = "ui-series"
#: The four checkpoints of the series: real tiny_mcq outputs (greedy, two replicas, sampled, G-Pass sampled).
CHECKPOINTS = (
    (10, OPENCOMPASS / "mcq"),
    (20, REALWORLD / "n-replicas" / "run"),
    (30, REALWORLD / "n-replicas" / "run_sampled"),
    (40, REALWORLD / "gpass-sampled-replicas" / "run"),
)
#: Planted leaderboard models on dataset ``planted_qa`` (200 examples): (model, examples right). The leader has 150;
#: ``model-b`` (148) is tied with it, ``model-e`` (100) significantly behind.
PLANTED = (("model-a", 150), ("model-b", 148), ("model-c", 140), ("model-d", 120), ("model-e", 100))
RUNNING = "ui-running"
FAILED = "ui-failed"
_CLOCK = datetime(2026, 1, 1, tzinfo=UTC)


def fill(store: ClickHouseStore, workflows: StandInWorkflows) -> None:
    """Every evaluation the UI tests look at."""
    for step, folder in CHECKPOINTS:
        record_fixture(store, f"ui-ck-{step}", folder, model=f"ckpt-{step}", order=step,
                       checkpoint=(SERIES, step, step * 1000))
    record_fixture(store, "ui-qa", OPENCOMPASS / "qa_chat", order=1)
    record_fixture(store, "ui-two-datasets", OPENCOMPASS / "two_datasets_one_fails", order=2)
    base, _ = planted(200, 150)
    for k, (model, right) in enumerate(PLANTED):
        flags = [i < right for i in range(200)] if right != 150 else base
        record(store, f"ui-planted-{model}", PlantedRun(verdicts("planted_qa", flags), model=model), model=model,
               order=50 + k)
    _failed(store, workflows)
    _running(store, workflows)


def _failed(store: ClickHouseStore, workflows: StandInWorkflows) -> None:
    """A failed evaluation: one run failed with a log excerpt, the other stored a dataset that failed."""
    store.store_run(FAILED, "r1", parse_run(OPENCOMPASS / "two_datasets_one_fails"))
    store.record_evaluation(EvaluationRecord(
        eval_id=FAILED, status="partial", model_name="smollm2", datasets=["tiny_qa", "bad_eval_ds", "tiny_mcq"],
        reason="r0: run failed", archive_url="file:///archive/ui-failed/", created_at=_CLOCK,
        finished_at=_CLOCK + timedelta(minutes=3),
        provenance={"started_at": (_CLOCK + timedelta(seconds=5)).isoformat(), "engine_version": "0.5.4",
                    "runs": [{"run_id": "r0", "datasets": ["tiny_mcq"], "phase": "failed", "error": "exit 1"},
                             {"run_id": "r1", "datasets": ["tiny_qa", "bad_eval_ds"], "phase": "succeeded",
                              "predictions": 5}],
                    "timings": {"runs": {"r0": {"queued_s": 0.5, "run_s": 20.0},
                                         "r1": {"queued_s": 0.4, "run_s": 61.0, "collect_s": 0.2}}}}))
    output = {"outcome": "partial", "failures": [{
        "run_id": "r0", "datasets": ["tiny_mcq"], "reason_class": "run_failed", "reason": "OpenCompass exited with 1",
        "log_excerpt": "Traceback (most recent call last):\n  File \"run.py\", line 1\n"
                       "RuntimeError: CUDA out of memory",
    }]}
    workflows.instances[FAILED] = FakeState(FAILED, Status.COMPLETED, serialized_output=json.dumps(output),
                                            created_at=_CLOCK, last_updated_at=_CLOCK + timedelta(minutes=3))


def _running(store: ClickHouseStore, workflows: StandInWorkflows) -> None:
    """A running evaluation with one of its two datasets stored."""
    store.store_run(RUNNING, "r0", parse_run(OPENCOMPASS / "mcq"))
    store.record_evaluation(EvaluationRecord(
        eval_id=RUNNING, status="running", model_name="smollm2", datasets=["tiny_mcq", "tiny_qa"],
        created_at=datetime.now(UTC)))
    workflows.instances[RUNNING] = FakeState(RUNNING, Status.RUNNING, created_at=datetime.now(UTC),
                                             last_updated_at=datetime.now(UTC))


def finish_running(store: ClickHouseStore, workflows: StandInWorkflows) -> None:
    """The running evaluation's second dataset arrives and it completes (what the live status must show)."""
    store.store_run(RUNNING, "r1", parse_run(OPENCOMPASS / "qa_chat"))
    store.record_evaluation(EvaluationRecord(
        eval_id=RUNNING, status="completed", model_name="smollm2", datasets=["tiny_mcq", "tiny_qa"],
        created_at=_CLOCK, finished_at=datetime.now(UTC)))
    workflows.instances[RUNNING] = FakeState(RUNNING, Status.COMPLETED,
                                             serialized_output=json.dumps({"outcome": "completed"}))
