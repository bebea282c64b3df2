"""Context of the evaluation page: the status as ``GET /evals/{id}`` reports it (workflow + row), live progress,
scores, failures with reasons and log excerpts, provenance, the archive and the event timeline.

The timeline is read from what the evaluation recorded (its row's times and ``provenance``: ``started_at``, per run
``timings`` and ``runs`` phases, ``finished_at``) and from its workflow's state; budeval keeps no separate event log
(the events themselves went to the pub/sub topic)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

#: Statuses after which the page stops polling.
FINAL = frozenset({"completed", "partial", "failed", "cancelled", "rejected", "reused"})


def progress(view: dict[str, Any], statuses: list[Any]) -> dict[str, Any]:
    """``{"done": n, "total": m, "status": ..., "final": bool}``: datasets with a stored status or score out of the
    datasets requested (the runs store each dataset's rows as they finish)."""
    record = view.get("evaluation") or {}
    wanted = list(record.get("datasets") or [])
    seen = {s.dataset for s in statuses} | {s.get("dataset") for s in view.get("scores") or []}
    done = len([d for d in wanted if d in seen]) if wanted else len(seen)
    status = str(view.get("status") or "unknown")
    return {"done": done, "total": max(len(wanted), done), "status": status, "final": status in FINAL}


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def timeline(view: dict[str, Any]) -> list[dict[str, Any]]:
    """The evaluation's events in time order: ``{"at": datetime | None, "what": str, "detail": str}``."""
    record = view.get("evaluation") or {}
    workflow = view.get("workflow") or {}
    prov = record.get("provenance") or {}
    events: list[dict[str, Any]] = []

    def add(at: Any, what: str, detail: str = "") -> None:
        events.append({"at": _parse(at), "what": what, "detail": detail})

    add(record.get("created_at") or workflow.get("created_at"), "requested",
        f"model {record.get('model_name') or '-'}; datasets {', '.join(record.get('datasets') or []) or '-'}")
    started = _parse(prov.get("started_at"))
    if started is not None:
        add(started, "started", f"attempt {prov.get('attempt', 1)}")
    timings = (prov.get("timings") or {}).get("runs") or {}
    for run in prov.get("runs") or []:
        run_id = str(run.get("run_id", "?"))
        spent = timings.get(run_id) or {}
        phases = ", ".join(f"{k.removesuffix('_s')} {float(v):.1f}s" for k, v in spent.items())
        detail = f"{', '.join(run.get('datasets') or [])}: {run.get('phase', '?')}"
        if run.get("predictions") is not None:
            detail += f", {run['predictions']} predictions"
        if phases:
            detail += f" ({phases})"
        if run.get("error"):
            detail += f" -- {run['error']}"
        at = started + timedelta(seconds=sum(float(v) for v in spent.values())) if started and spent else None
        add(at, f"run {run_id} finished", detail)
    if record.get("archive_url"):
        add(record.get("finished_at"), "archived", str(record["archive_url"]))
    elif record.get("archive_pending"):
        add(None, "archive pending", str(prov.get("archive_pending_reason") or ""))
    if record.get("finished_at"):
        add(record.get("finished_at"), str(view.get("status") or record.get("status")), record.get("reason") or "")
    if workflow.get("last_updated_at"):
        add(workflow.get("last_updated_at"), f"workflow {str(workflow.get('status', '')).lower()}", "")
    known = [e for e in events if e["at"] is not None]
    unknown = [e for e in events if e["at"] is None]
    return sorted(known, key=lambda e: e["at"]) + unknown


def provenance_rows(record: dict[str, Any]) -> list[tuple[str, Any]]:
    """The provenance as (key, value) rows: columns first, then the JSON's keys (nested values as JSON)."""
    rows: list[tuple[str, Any]] = []
    for key in ("model_name", "model_source", "model_revision", "model_commit", "engine_version", "gpu_type",
                "gpu_count", "params_hash", "experiment_id", "checkpoint_series", "checkpoint_step", "reused_from"):
        value = record.get(key)
        if value not in (None, "", 0) or key == "gpu_count":
            rows.append((key, value))
    for key, value in sorted((record.get("provenance") or {}).items()):
        if key not in ("runs", "timings"):
            rows.append((key, value))
    return rows


def evaluation_context(store: Any, view: dict[str, Any]) -> dict[str, Any]:
    """The page's context from the status ``view`` (the body of ``GET /evals/{id}``)."""
    eval_id = str(view.get("eval_id"))
    record = view.get("evaluation") or {}
    statuses = store.statuses(eval_id) if record else []
    failing = [s for s in statuses if s.status != "ok"]
    workflow = view.get("workflow") or {}
    return {
        "eval_id": eval_id,
        "view": view,
        "record": record,
        "scores": view.get("scores") or [],
        "failures": view.get("failures") or [],
        "failing_datasets": failing,
        "progress": progress(view, statuses),
        "timeline": timeline(view),
        "provenance": provenance_rows(record),
        "cancellable": str(workflow.get("status", "")) in ("PENDING", "RUNNING", "SUSPENDED", "STALLED"),
    }
