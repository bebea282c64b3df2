"""Evaluation routes of the HTTP API (bearer token): submit (``POST /evals``), status (``GET /evals/{id}``) and
cancel (``DELETE /evals/{id}``).

Cancel is an event, not an act of the API: the route raises ``cancel_requested`` into the evaluation's workflow and
answers 202; the workflow stops its runs, writes the row ``cancelled`` and publishes ``cancelled`` itself, so an
evaluation has exactly one final event (a finalize already under way finishes instead; docs/workflow.md "Cancel").
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from budeval.engine.results.progress import ProgressReader
from budeval.logs import get_logger
from budeval.service.admission import Admission, Decision
from budeval.service.api_common import ApiError, ServiceDeps, api_error, read_body, safe_id
from budeval.service.progress import evaluation_progress
from budeval.service.status import ACTIVE_WORKFLOW_STATES, evaluation_status, usage_view, workflow_view
from budeval.storage.base import EvaluationRecord
from budeval.workflow import names


def eval_routes(deps: ServiceDeps, admission: Admission, router: APIRouter) -> None:
    """Add ``POST /evals``, ``GET /evals/{id}`` and ``DELETE /evals/{id}`` to ``router``."""
    settings = deps.settings

    @router.post(
        "/evals",
        summary="Submit an evaluation request (the same path as the topic)",
        status_code=202,
        responses={
            200: {"description": "duplicate: a workflow with this eval id exists; or the plan of a dry run"},
            400: {},
            422: {},
            503: {},
        },
    )
    async def submit(
        request: Request,
        dry_run: Annotated[bool, Query(description="validate and plan only (budeval plan): nothing starts")] = False,
    ) -> JSONResponse:
        body = await read_body(request)
        if dry_run:
            from budeval.service.plan import plan_request

            plan = await run_in_threadpool(plan_request, body, settings, deps.suites, deps.store, deps.endpoints)
            if plan.valid:
                return JSONResponse(plan.document(), status_code=200)
            unparsed = plan.field in (None, "<request>", "data")
            return JSONResponse({"error": "rejected", **plan.document()}, status_code=400 if unparsed else 422)
        decision: Decision = await run_in_threadpool(admission.handle, body, "http")
        if decision.kind == "accepted":
            answer: dict[str, Any] = {"eval_id": decision.eval_id, "status": "accepted"}
            if decision.attempt > 1:
                answer["attempt"] = decision.attempt
            return JSONResponse(answer, status_code=202)
        if decision.kind == "duplicate":
            return JSONResponse(
                {"eval_id": decision.eval_id, "status": "duplicate", "workflow_status": decision.workflow_status,
                 **({"message": decision.detail} if decision.detail else {})},
                status_code=200,
            )
        if decision.kind == "retry":
            return JSONResponse(
                {"error": "unavailable", "message": decision.detail}, status_code=503, headers={"Retry-After": "5"}
            )
        rejection = decision.rejection
        assert rejection is not None
        unparsed = rejection.field in (None, "<request>", "data")
        return JSONResponse(
            {"error": "rejected", "reason": rejection.reason, "field": rejection.field, "eval_id": rejection.eval_id,
             "request_id": decision.request_id},
            status_code=400 if unparsed else 422,
        )

    @router.get("/evals/{eval_id}", summary="Status, scores, failures and (while it runs) progress of one evaluation")
    def get_eval(eval_id: str) -> dict[str, Any]:
        safe_id(eval_id)
        view = status_view(deps, eval_id)
        if view is None:
            raise api_error(404, "not_found", f"no evaluation {eval_id!r}")
        return view

    @router.delete(
        "/evals/{eval_id}",
        summary="Ask an evaluation's workflow to cancel it (it stops its runs, records and publishes `cancelled`)",
        status_code=202,
        responses={200: {"description": "already cancelled"}, 404: {}, 409: {"description": "not running"}},
    )
    def cancel(eval_id: str) -> JSONResponse:
        safe_id(eval_id)
        code, body = cancel_view(deps, eval_id)
        if code >= 400:
            raise ApiError(code, body)
        return JSONResponse(body, status_code=code)


def _workflow_state(deps: ServiceDeps, eval_id: str) -> Any:
    try:
        return deps.workflows.get_workflow_state(eval_id, fetch_payloads=True)
    except Exception as exc:
        raise api_error(503, "sidecar_unavailable", f"workflow state unavailable: {type(exc).__name__}") from None


def status_view(deps: ServiceDeps, eval_id: str) -> dict[str, Any] | None:
    """The body of ``GET /evals/{id}`` (also the web UI's evaluation page); None for an unknown evaluation. Raises
    :class:`ApiError` 503 when the workflow engine cannot be asked."""
    workflow = workflow_view(_workflow_state(deps, eval_id))
    record: EvaluationRecord | None = deps.store.get_evaluation(eval_id)
    if workflow is None and record is None:
        return None
    output = (workflow or {}).get("output") or {}
    scores = [s.model_dump(mode="json") for s in deps.store.results(eval_id)] if record is not None else []
    if not scores:
        scores = list(output.get("scores", []))
    usage = deps.store.usage(eval_id) if record is not None else {}
    status = evaluation_status(workflow, record)
    return {
        "eval_id": eval_id,
        "status": status,
        "progress": _progress_of(deps, eval_id) if status in ("pending", "running") else None,
        "reason": (record.reason if record is not None else None) or output.get("reason"),
        "workflow": workflow,
        "evaluation": record.model_dump(mode="json") if record is not None else None,
        "scores": scores,
        "failures": list(output.get("failures", [])),
        "usage": usage_view(usage),
    }


def _progress_of(deps: ServiceDeps, eval_id: str) -> dict[str, Any]:
    """A running evaluation's progress from its runs' files (budeval/service/progress.py)."""
    reader = deps.progress.reader if deps.progress is not None else ProgressReader()
    planned = deps.progress.planned(eval_id) if deps.progress is not None else {}
    return evaluation_progress(reader, deps.backend, eval_id, planned)


def cancel_view(deps: ServiceDeps, eval_id: str) -> tuple[int, dict[str, Any]]:
    """``DELETE /evals/{id}`` (also the web UI's cancel button): (HTTP status, body). Raising
    ``cancel_requested`` into the workflow is the whole act; 200 already cancelled, 202 requested, 404 unknown,
    409 not running, 503 the workflow engine cannot be asked or told."""
    try:
        workflow = workflow_view(_workflow_state(deps, eval_id))
    except ApiError as exc:
        return exc.status, exc.body
    record: EvaluationRecord | None = deps.store.get_evaluation(eval_id)
    if workflow is None and record is None:
        return 404, {"error": "not_found", "message": f"no evaluation {eval_id!r}"}
    status = evaluation_status(workflow, record)
    if status == "cancelled":
        return 200, {"eval_id": eval_id, "status": "cancelled", "already": True}
    if workflow is None or workflow["status"] not in ACTIVE_WORKFLOW_STATES:
        why = "its workflow is gone" if workflow is None else "it already finished"
        return 409, {"error": "conflict", "message": f"evaluation {eval_id!r} cannot be cancelled: {why} ({status})",
                     "current": status}
    try:
        deps.workflows.raise_workflow_event(eval_id, names.CANCEL_EVENT, data={"reason": names.CANCEL_REASON})
    except Exception as exc:
        return 503, {"error": "sidecar_unavailable", "message": f"cancel not delivered: {type(exc).__name__}"}
    get_logger(eval_id=eval_id).info("cancel requested")
    return 202, {"eval_id": eval_id, "status": "cancel_requested",
                 "message": "the workflow stops its runs, records and publishes `cancelled`; "
                            "an evaluation already finalizing finishes instead"}
