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
#: Cancel: ``stop_runs`` tells the runs' child workflows and stops the backend's runs; ``cancel_evaluation`` stops what
#: a late submit started, writes the row ``cancelled`` and publishes ``cancelled``.
STOP_RUNS = "stop_runs"
CANCEL = "cancel_evaluation"

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
SUPERSEDE = "supersede_attempt"

#: External event raised into a run's child workflow when its job reaches a terminal phase.
RUN_FINISHED_EVENT = "run_finished"
#: External event raised into the evaluation's workflow by ``DELETE /evals/{id}`` (and by the evaluation's
#: ``stop_runs`` activity into its runs' child workflows): the workflow itself stops, records and announces.
CANCEL_EVENT = "cancel_requested"
#: The reason on a cancelled evaluation's row and event.
CANCEL_REASON = "cancelled by request"


def run_instance_id(eval_id: str, run_id: str) -> str:
    """Instance id of the child workflow that owns one run (the watcher raises events to it)."""
    return f"{eval_id}~{run_id}"


def event_id(eval_id: str, kind: str, attempt: int = 1, run_id: str | None = None) -> str:
    """Deterministic CloudEvent id of an evaluation's event: ``{eval_id}.{kind}`` (``.{run_id}`` for a run's
    ``progress``), ``.attempt{n}`` appended for a re-run (attempt 2 on): redelivery after a crash publishes the same
    id, a re-run under the same eval id does not (consumers that dedupe by id would drop its events)."""
    base = f"{eval_id}.{kind}" + (f".{run_id}" if run_id else "")
    return base if attempt <= 1 else f"{base}.attempt{attempt}"
