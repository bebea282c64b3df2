"""How run outcomes become an evaluation outcome: completed, partial (with which and why) or failed."""

from budeval.backends.base import RunState
from budeval.schemas.request import EvalRequest
from budeval.schemas.results import DatasetStatus, MetricRow
from budeval.workflow.activities import plan_runs
from budeval.workflow.models import RunOutcome
from budeval.workflow.outcome import classify


def _ok(run_id: str, dataset: str, score: float | None = 50.0, status: str = "ok") -> RunOutcome:
    return RunOutcome(
        run_id=run_id,
        datasets=[dataset],
        state=RunState(eval_id="e", run_id=run_id, phase="succeeded"),
        metrics=[MetricRow(model="m", dataset=dataset, metric="accuracy", score=score, version="v", mode="gen")],
        statuses=[DatasetStatus(model="m", dataset=dataset, status=status)],  # type: ignore[arg-type]
    )


def _failed(run_id: str) -> RunOutcome:
    state = RunState(eval_id="e", run_id=run_id, phase="failed", reason_class="oom_killed", message="OOMKilled")
    return RunOutcome(run_id=run_id, datasets=["b"], state=state, error="OOMKilled")


def test_all_ok_is_completed() -> None:
    assert classify([_ok("r0", "a"), _ok("r1", "b")], None) == ("completed", None)


def test_one_failed_run_is_partial_and_names_it() -> None:
    outcome, reason = classify([_ok("r0", "a"), _failed("r1")], None)
    assert outcome == "partial" and reason is not None and "r1" in reason and "OOMKilled" in reason


def test_failed_dataset_inside_a_good_run_is_partial() -> None:
    outcome, reason = classify([_ok("r0", "a"), _ok("r1", "b", None, "failed")], None)
    assert outcome == "partial" and reason is not None and "b" in reason


def test_no_scores_is_failed() -> None:
    assert classify([_failed("r0")], None)[0] == "failed"
    assert classify([], "render broke") == ("failed", "render broke")


def test_plan_runs_split() -> None:
    base = {"eval_id": "e", "model": {"name": "m", "source": {"type": "huggingface", "path": "/m"}}}
    per = EvalRequest.model_validate({**base, "datasets": ["a", "b"]})
    assert [(p.run_id, p.datasets) for p in plan_runs(per, ["a", "b"])] == [("r0", ["a"]), ("r1", ["b"])]
    single = EvalRequest.model_validate({**base, "datasets": ["a", "b"], "split": "single"})
    assert [(p.run_id, p.datasets) for p in plan_runs(single, ["a", "b"])] == [("r0", ["a", "b"])]


def test_cluster_defaults_fill_only_what_the_request_left_unset() -> None:
    from budeval.config import Settings
    from budeval.schemas.request import Resources
    from budeval.workflow.activities import with_cluster_defaults

    settings = Settings(
        default_gpu_resource_name="amd.com/gpu",
        default_node_selector={"pool": "gpu"},
        default_tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        default_queue="evals",
        default_priority_class="batch-low",
    )
    filled = with_cluster_defaults(Resources(gpus=2), settings)
    assert filled.gpu_resource_name == "amd.com/gpu" and filled.node_selector == {"pool": "gpu"}
    assert filled.tolerations[0].key == "gpu" and filled.queue == "evals" and filled.priority_class == "batch-low"
    own = Resources(gpu_resource_name="nvidia.com/gpu", node_selector={"a": "b"}, queue="mine")
    kept = with_cluster_defaults(own, settings)
    assert kept.gpu_resource_name == "nvidia.com/gpu" and kept.node_selector == {"a": "b"} and kept.queue == "mine"


def test_phase_timings_mix_the_workflow_clock_naive_utc_and_the_run_clock_aware() -> None:
    from datetime import UTC, datetime

    from budeval.backends.base import RunState
    from budeval.workflow.models import RunOutcome
    from budeval.workflow.provenance import timings

    started = datetime(2026, 12, 1, 2, 0, 10, tzinfo=UTC).timestamp()  # what the run itself recorded
    run = RunOutcome(
        run_id="r0",
        datasets=["tiny_qa"],
        state=RunState(eval_id="e", run_id="r0", phase="succeeded"),
        environment={"captured_at": started},
        timings={  # ctx.current_utc_datetime: naive UTC
            "submitted_at": "2026-12-01T02:00:00",
            "finished_at": "2026-12-01T02:01:10",
            "collected_at": "2026-12-01T02:01:12.500000",
        },
    )
    got = timings([run], "2026-12-01T01:59:59", "2026-12-01T02:01:13")
    assert got == {"total_s": 74.0, "runs": {"r0": {"queued_s": 10.0, "run_s": 60.0, "collect_s": 2.5}}}
