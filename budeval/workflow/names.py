"""Stable names shared by the workflow, its activities and the code that raises events into it.

Names are part of the durable history: renaming one breaks in-flight workflows, so add new names instead.
"""

from __future__ import annotations

EVALUATION_WORKFLOW = "evaluation"
RUN_WORKFLOW = "evaluation_run"

#: Version names of the workflows' versioned registrations (``budeval.workflow.worker.WORKFLOW_VERSIONS``). Each
#: instance's history records the version it started on and replays on it; never rename or reuse one.
VERSION_1 = "1"

# Activities (what the worker registers; see EvalActivities for why they are coarse).
PREPARE = "prepare_evaluation"
SUBMIT = "submit_run"
CHECK = "check_run"
COLLECT = "collect_run"
FINALIZE = "finalize_evaluation"
PUBLISH = "publish_event"
GATE = "run_gate"

# Steps inside the activities: names in logs, Deps.calls and the crash points of faults.py.
VALIDATE = "validate_request"
DEDUPE = "find_reusable"
BEGIN = "begin_evaluation"
RENDER = "render_runs"
EXTRACT = "extract_run"
STORE = "store_run"
ARCHIVE = "archive_evaluation"
FINISH = "finish_evaluation"
COPY_RESULTS = "copy_results"
CLEANUP = "cleanup_runs"

#: External event raised into a run's child workflow when its job reaches a terminal phase.
RUN_FINISHED_EVENT = "run_finished"


def run_instance_id(eval_id: str, run_id: str) -> str:
    """Instance id of the child workflow that owns one run (the watcher raises events to it)."""
    return f"{eval_id}~{run_id}"
