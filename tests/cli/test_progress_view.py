"""How `budeval status` and `submit --wait` print a running evaluation's progress (budeval/cli/progress_view.py)."""

from __future__ import annotations

from budeval.cli.progress_view import eta, event_line, progress_lines

TASK = {"model": "smollm2-135m-instruct", "dataset": "tiny_qa", "stage": "inferring", "done": 2, "total": 6,
        "estimated": True, "batches_done": 1, "batches_total": 3, "eta_s": 24.0, "elapsed_s": 12.0}


def test_status_lines_of_a_running_evaluation() -> None:
    progress = {"done": 2, "total": 6, "eta_s": 72.0,
                "runs": [{"run_id": "r0", "datasets_planned": 2, "tasks": [TASK]}]}
    assert progress_lines(progress) == [
        "progress: 2/~6 examples, ETA 1m12s",  # the total is the bar's estimate
        " run r0 (1 dataset(s) not started)",
        "  tiny_qa (smollm2-135m-instruct): inferring 2/~6 examples, batch 1/3, ETA 24s",
    ]
    assert progress_lines(None) == []


def test_a_finished_task_has_an_exact_count_and_no_eta() -> None:
    done = {**TASK, "stage": "evaluated", "done": 5, "total": 5, "estimated": False, "eta_s": 0.0}
    lines = progress_lines({"done": 5, "total": 5, "eta_s": 0.0, "runs": [{"run_id": "r0", "tasks": [done]}]})
    assert lines[-1] == "  tiny_qa (smollm2-135m-instruct): evaluated 5/5 examples"


def test_a_live_event_as_one_line() -> None:
    data = {"run_id": "r0", "done": 2, "total": 6, "eta_s": None, "live": True, "progress": {"tasks": [TASK]}}
    assert event_line(data) == "  run r0: 2/~6 examples, ETA ?"
    assert eta(3725) == "ETA 1h02m"
