"""One reading of an evaluation's state from its two sources: the workflow (the sidecar) and its row (the store).

Used by ``GET /evals/{id}``, ``DELETE /evals/{id}``, admission (may a ``force`` request re-run this id?) and the
housekeeping reconciler, so that they all agree on what "failed", "cancelled" or "still running" means.
"""

from __future__ import annotations

import json
from typing import Any

from budeval.schemas.results import RunUsage
from budeval.storage.base import EvaluationRecord

#: Workflow runtime states in which the workflow will still act (publish its final event, write its row).
ACTIVE_WORKFLOW_STATES = frozenset({"PENDING", "RUNNING", "SUSPENDED", "STALLED"})
#: Outcomes a ``force`` request may re-run under the same eval id (docs/workflow.md "Re-running an evaluation").
RERUNNABLE = frozenset({"failed", "cancelled", "rejected"})

_WORKFLOW_TO_STATUS = {
    "PENDING": "pending",
    "RUNNING": "running",
    "SUSPENDED": "running",
    "STALLED": "running",
    "TERMINATED": "cancelled",
    "FAILED": "failed",
}


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else None


def _json(raw: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def workflow_view(state: Any) -> dict[str, Any] | None:
    """The SDK's ``WorkflowState`` as plain JSON: ``status`` (runtime status name), times, ``output`` (the
    workflow's result, a dict or None), ``failure``; None for no workflow."""
    if state is None:
        return None
    status = getattr(state.runtime_status, "name", str(state.runtime_status))
    failure = getattr(state, "failure_details", None)
    return {
        "status": status,
        "created_at": _iso(getattr(state, "created_at", None)),
        "last_updated_at": _iso(getattr(state, "last_updated_at", None)),
        "output": _json(getattr(state, "serialized_output", None)),
        "failure": None if failure is None else {"type": failure.error_type, "message": failure.message},
        "attempt": workflow_attempt(state),
    }


def workflow_attempt(state: Any) -> int:
    """Which attempt of its eval id a workflow runs (its input's ``attempt``; 1 when absent or unreadable)."""
    value = (_json(getattr(state, "serialized_input", None)) or {}).get("attempt", 1)
    return value if isinstance(value, int) and value >= 1 else 1


def evaluation_status(workflow: dict[str, Any] | None, record: EvaluationRecord | None) -> str:
    """The evaluation's status: a final row wins (unless it is an earlier attempt's and the workflow runs a later one,
    a ``force`` re-run whose prepare has not written its row yet); else a completed workflow's outcome; else the
    workflow's state."""
    if record is not None and record.status not in ("pending", "running") and not _later_attempt(workflow, record):
        return record.status
    if workflow is not None and workflow["status"] == "COMPLETED":
        return str((workflow.get("output") or {}).get("outcome", "completed"))
    if workflow is not None:
        return _WORKFLOW_TO_STATUS.get(workflow["status"], "running")
    return record.status if record is not None else "unknown"


def _later_attempt(workflow: dict[str, Any] | None, record: EvaluationRecord) -> bool:
    """Does ``workflow`` run a later attempt of its eval id than the one ``record`` is of (``provenance.attempt``,
    written from attempt 2 on)?"""
    if workflow is None:
        return False
    recorded = record.provenance.get("attempt", 1)
    recorded = recorded if isinstance(recorded, int) and recorded >= 1 else 1
    return int(workflow.get("attempt") or 1) > recorded


def usage_view(runs: dict[str, RunUsage]) -> dict[str, Any] | None:
    """An endpoint evaluation's requests and tokens: ``{"total": {...}, "runs": {run_id: {...}}}`` (fields of
    :class:`~budeval.schemas.results.RunUsage`); None when no run recorded usage (a Hugging Face model)."""
    total = RunUsage.total(list(runs.values()))
    if total is None:
        return None
    return {"total": total.model_dump(mode="json"), "runs": {k: v.model_dump(mode="json") for k, v in runs.items()}}
