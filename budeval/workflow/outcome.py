"""An evaluation's outcome from its runs' outcomes: ``completed``, ``partial`` (which runs or datasets, and why) or
``failed``. Pure: the workflow judges its runs with it, and ``budeval extract`` re-judges an evaluation it adds a run
to (budeval/workflow/steps.py), so both write the same status and reason.
"""

from __future__ import annotations

from typing import Any

from budeval.workflow.models import EvalOutcome, RunOutcome


def classify(outcomes: list[RunOutcome], render_error: str | None) -> tuple[EvalOutcome, str | None]:
    """``failed`` when rendering failed or no run scored anything; ``partial`` when a run or a dataset failed;
    else ``completed``. The reason names each failure (``run_id/dataset: why``), None when completed."""
    if render_error is not None:
        return "failed", render_error
    scored = [m for o in outcomes for m in o.metrics if m.score is not None]
    bad = failures(outcomes)
    if not scored:
        return "failed", "; ".join(f"{f['run_id']}: {f['reason']}" for f in bad) or "no scores"
    if bad:
        return "partial", "; ".join(f"{f['run_id']}/{f.get('dataset', '*')}: {f['reason']}" for f in bad)
    return "completed", None


def failures(outcomes: list[RunOutcome]) -> list[dict[str, Any]]:
    """One entry per failed run (``run_id``, ``datasets``, ``reason_class``, ``reason``, ``log_excerpt``) and per
    dataset not ``ok`` inside a run that succeeded (``run_id``, ``model``, ``dataset``, ``reason_class``,
    ``reason``)."""
    found: list[dict[str, Any]] = []
    for o in outcomes:
        if not o.ok:
            found.append(
                {
                    "run_id": o.run_id,
                    "datasets": o.datasets,
                    "reason_class": o.state.reason_class or "unknown",
                    "reason": o.error or o.state.message or o.state.phase,
                    "log_excerpt": o.state.log_excerpt[-2000:],
                }
            )
            continue
        for s in o.statuses:
            if s.status != "ok":
                found.append(
                    {
                        "run_id": o.run_id,
                        "model": s.model,
                        "dataset": s.dataset,
                        "reason_class": s.status,
                        "reason": s.reason or s.status,
                    }
                )
    return found
