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

from budeval.logs import get_logger
from budeval.service.admission import Admission, Decision
from budeval.service.api_common import ServiceDeps, api_error, read_body, safe_id
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

    def workflow_state(eval_id: str) -> Any:
        try:
            return deps.workflows.get_workflow_state(eval_id, fetch_payloads=True)
        except Exception as exc:
            raise api_error(503, "sidecar_unavailable", f"workflow state unavailable: {type(exc).__name__}") from None

    @router.get("/evals/{eval_id}", summary="Status, scores and failures of one evaluation")
    def get_eval(eval_id: str) -> dict[str, Any]:
        safe_id(eval_id)
        workflow = workflow_view(workflow_state(eval_id))
        record: EvaluationRecord | None = deps.store.get_evaluation(eval_id)
        if workflow is None and record is None:
            raise api_error(404, "not_found", f"no evaluation {eval_id!r}")
        output = (workflow or {}).get("output") or {}
        scores = [s.model_dump(mode="json") for s in deps.store.results(eval_id)] if record is not None else []
        if not scores:
            scores = list(output.get("scores", []))
        usage = deps.store.usage(eval_id) if record is not None else {}
        return {
            "eval_id": eval_id,
            "status": evaluation_status(workflow, record),
            "reason": (record.reason if record is not None else None) or output.get("reason"),
            "workflow": workflow,
            "evaluation": record.model_dump(mode="json") if record is not None else None,
            "scores": scores,
            "failures": list(output.get("failures", [])),
            "usage": usage_view(usage),
        }

    @router.delete(
        "/evals/{eval_id}",
        summary="Ask an evaluation's workflow to cancel it (it stops its runs, records and publishes `cancelled`)",
        status_code=202,
        responses={200: {"description": "already cancelled"}, 404: {}, 409: {"description": "not running"}},
    )
    def cancel(eval_id: str) -> JSONResponse:
        safe_id(eval_id)
        workflow = workflow_view(workflow_state(eval_id))
        record: EvaluationRecord | None = deps.store.get_evaluation(eval_id)
        if workflow is None and record is None:
            raise api_error(404, "not_found", f"no evaluation {eval_id!r}")
        status = evaluation_status(workflow, record)
        if status == "cancelled":
            return JSONResponse({"eval_id": eval_id, "status": "cancelled", "already": True}, status_code=200)
        if workflow is None or workflow["status"] not in ACTIVE_WORKFLOW_STATES:
            why = "its workflow is gone" if workflow is None else "it already finished"
            raise api_error(409, "conflict", f"evaluation {eval_id!r} cannot be cancelled: {why} ({status})",
                            current=status)
        try:
            deps.workflows.raise_workflow_event(eval_id, names.CANCEL_EVENT, data={"reason": names.CANCEL_REASON})
        except Exception as exc:
            raise api_error(503, "sidecar_unavailable", f"cancel not delivered: {type(exc).__name__}") from None
        get_logger(eval_id=eval_id).info("cancel requested")
        return JSONResponse(
            {"eval_id": eval_id, "status": "cancel_requested",
             "message": "the workflow stops its runs, records and publishes `cancelled`; "
                        "an evaluation already finalizing finishes instead"},
            status_code=202,
        )
