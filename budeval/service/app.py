"""The Dapr app and HTTP API of budeval: subscription endpoint, evaluations API, health and metrics.

Routes (OpenAPI at ``/docs``):

* Dapr: ``GET /dapr/subscribe`` (programmatic subscription to the request topic) and ``POST /events/requests``
  (a CloudEvent in; Dapr's answer ``SUCCESS``, ``RETRY`` or ``DROP``), guarded by Dapr's app API token when set.
* API (bearer token): ``POST /evals`` (``?dry_run=true``: the plan of ``budeval plan``, nothing starts),
  ``GET /evals/{id}``, ``GET /evals/{id}/results``, ``DELETE /evals/{id}``,
  ``GET /leaderboard``, ``GET /compare``.
* Open: ``/healthz`` (the process answers), ``/readyz`` (store and sidecar reachable); ``/metrics`` (Prometheus)
  open, behind the bearer token or off (``metrics_access``); ``/docs`` and ``/openapi.json`` on or off
  (``docs_enabled``). docs/security.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from budeval import __version__
from budeval.backends.base import JobBackend
from budeval.config import Settings
from budeval.errors import BudevalError, NotFoundError, TransientError, UnsafeIdError
from budeval.events.cloudevents import make_event
from budeval.events.publisher import EventPublisher
from budeval.logs import get_logger
from budeval.policy.credentials import EndpointPolicy
from budeval.schemas.ids import check_dns_label
from budeval.service.admission import Admission, Decision, WorkflowClient
from budeval.service.auth import DAPR_TOKEN_HEADER, Auth
from budeval.service.decisions_routes import decisions_router
from budeval.service.intake import MAX_REQUEST_BYTES
from budeval.service.metrics import Metrics
from budeval.storage.base import EvaluationRecord

REQUEST_ROUTE = "/events/requests"
#: Bodies are read up to this size; anything longer is rejected unread (the intake limit applies below it).
_READ_LIMIT = MAX_REQUEST_BYTES + 1

_bearer = HTTPBearer(auto_error=False, description="BUDEVAL_API_TOKEN (or the file BUDEVAL_API_TOKEN_FILE)")


@dataclass
class ServiceDeps:
    settings: Settings
    workflows: WorkflowClient
    store: Any  # a ResultStore plus the store's queries (leaderboard, compare, flips); serialised by the caller
    backend: JobBackend
    publisher: EventPublisher
    suites: dict[str, list[str]]
    auth: Auth
    metrics: Metrics = field(default_factory=Metrics)
    #: The sidecar's HTTP base URL (``http://127.0.0.1:3500``) for readiness; None skips that check.
    sidecar_http_url: str | None = None
    #: What endpoint requests may reach; None: the local registry of the settings (budeval/policy/credentials.py).
    endpoints: EndpointPolicy | None = None


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers


def _error(status: int, reason: str, message: str, **extra: Any) -> ApiError:
    return ApiError(status, {"error": reason, "message": message, **extra})


async def _read_body(request: Request) -> bytes:
    """The body, but never more than ``_READ_LIMIT`` bytes of it: a 10 MB request is refused, not buffered."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _READ_LIMIT:
            break
    return b"".join(chunks)


def _safe_id(eval_id: str) -> str:
    try:
        return check_dns_label(eval_id, field="eval_id")
    except UnsafeIdError as exc:
        raise _error(422, exc.reason, exc.message) from None


_WORKFLOW_TO_STATUS = {
    "PENDING": "pending",
    "RUNNING": "running",
    "SUSPENDED": "running",
    "STALLED": "running",
    "TERMINATED": "cancelled",
    "FAILED": "failed",
}


def _workflow_view(state: Any) -> dict[str, Any] | None:
    if state is None:
        return None
    status = getattr(state.runtime_status, "name", str(state.runtime_status))
    output: Any = None
    raw = getattr(state, "serialized_output", None)
    if raw:
        try:
            output = json.loads(raw)
        except ValueError:
            output = None
    failure = getattr(state, "failure_details", None)
    return {
        "status": status,
        "created_at": _iso(getattr(state, "created_at", None)),
        "last_updated_at": _iso(getattr(state, "last_updated_at", None)),
        "output": output if isinstance(output, dict) else None,
        "failure": None if failure is None else {"type": failure.error_type, "message": failure.message},
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else None


def create_app(deps: ServiceDeps) -> FastAPI:
    settings, metrics, auth = deps.settings, deps.metrics, deps.auth
    admission = Admission(settings, deps.workflows, deps.publisher, deps.suites, metrics, deps.endpoints)
    log = get_logger(component="api")

    app = FastAPI(
        title="budeval",
        version=__version__,
        description="Evaluations of LLMs on OpenCompass, orchestrated by Dapr workflows. "
        "Requests arrive on the pub/sub topic or through POST /evals; both take the same path.",
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url="/redoc" if settings.docs_enabled else None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    app.state.deps = deps

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(BudevalError)
    async def _budeval_error(_: Request, exc: BudevalError) -> JSONResponse:
        if isinstance(exc, NotFoundError):
            status = 404
        elif isinstance(exc, TransientError):
            status = 503
        else:
            status = 400
        return JSONResponse({"error": exc.reason, "message": exc.message}, status_code=status)

    def bearer(
        request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None
    ) -> None:
        if not auth.bearer_ok(request.headers.get("authorization")):
            raise ApiError(
                401,
                {"error": "unauthorized", "message": "a valid bearer token is required"},
                {"WWW-Authenticate": "Bearer"},
            )

    def dapr_guard(
        dapr_api_token: Annotated[str | None, Header(alias=DAPR_TOKEN_HEADER, include_in_schema=False)] = None,
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> None:
        if not auth.dapr_ok(dapr_api_token, authorization):
            raise ApiError(401, {"error": "unauthorized", "message": "a valid dapr-api-token is required"})

    open_routes = APIRouter(tags=["health"])
    dapr_routes = APIRouter(tags=["dapr"], dependencies=[Depends(dapr_guard)])
    api = APIRouter(tags=["evaluations"], dependencies=[Depends(bearer)])

    # -- health ----------------------------------------------------------------------------------------------------
    @open_routes.get("/healthz", summary="The process answers")
    def healthz() -> JSONResponse:
        # A part the service cannot work without has died (e.g. the sidecar child): say so until the process exits.
        failure = getattr(app.state, "failure", None)
        if failure:
            return JSONResponse({"status": "failing", "reason": str(failure)}, status_code=503)
        return JSONResponse({"status": "ok"})

    @open_routes.get("/readyz", summary="The result store and the Dapr sidecar are reachable")
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            ping = getattr(deps.store, "ping", None)
            if callable(ping):
                ping()
            else:
                deps.store.get_evaluation("readyz-probe")
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"unavailable: {type(exc).__name__}"
        if deps.sidecar_http_url is not None:
            try:
                answer = httpx.get(f"{deps.sidecar_http_url}/v1.0/healthz/outbound",
                                   timeout=deps.settings.sidecar_probe_timeout_s)
                checks["sidecar"] = "ok" if answer.is_success else f"unavailable: HTTP {answer.status_code}"
            except httpx.HTTPError as exc:
                checks["sidecar"] = f"unavailable: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503)

    def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    if settings.metrics_access != "off":
        router = open_routes if settings.metrics_access == "open" else api
        router.add_api_route("/metrics", prometheus, methods=["GET"], summary="Prometheus metrics",
                             response_class=Response)

    # -- Dapr ------------------------------------------------------------------------------------------------------
    @dapr_routes.get("/dapr/subscribe", summary="Dapr programmatic subscription")
    def subscribe() -> list[dict[str, Any]]:
        return [{"pubsubname": settings.pubsub_name, "topic": settings.request_topic, "route": REQUEST_ROUTE}]

    @dapr_routes.post(REQUEST_ROUTE, summary="A request delivered from the topic (Dapr's app-response contract)")
    async def on_request(request: Request) -> dict[str, str]:
        body = await _read_body(request)
        from starlette.concurrency import run_in_threadpool

        try:
            decision: Decision = await run_in_threadpool(admission.handle, body, "topic")
        except Exception as exc:  # never crash the delivery loop; an unexpected bug is logged and retried by Dapr
            log.error("request handling failed", error=type(exc).__name__, message=str(exc)[:300])
            return {"status": "RETRY"}
        answer = {"accepted": "SUCCESS", "duplicate": "SUCCESS", "rejected": "DROP", "retry": "RETRY"}
        return {"status": answer[decision.kind]}

    # -- API -------------------------------------------------------------------------------------------------------
    @api.post(
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
        body = await _read_body(request)
        from starlette.concurrency import run_in_threadpool

        if dry_run:
            from budeval.service.plan import plan_request

            plan = await run_in_threadpool(plan_request, body, settings, deps.suites, deps.store, deps.endpoints)
            if plan.valid:
                return JSONResponse(plan.document(), status_code=200)
            unparsed = plan.field in (None, "<request>", "data")
            return JSONResponse({"error": "rejected", **plan.document()}, status_code=400 if unparsed else 422)
        decision: Decision = await run_in_threadpool(admission.handle, body, "http")
        if decision.kind == "accepted":
            return JSONResponse({"eval_id": decision.eval_id, "status": "accepted"}, status_code=202)
        if decision.kind == "duplicate":
            return JSONResponse(
                {"eval_id": decision.eval_id, "status": "duplicate", "workflow_status": decision.workflow_status},
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

    def _workflow_state(eval_id: str) -> Any:
        try:
            return deps.workflows.get_workflow_state(eval_id, fetch_payloads=True)
        except Exception as exc:
            raise _error(503, "sidecar_unavailable", f"workflow state unavailable: {type(exc).__name__}") from None

    @api.get("/evals/{eval_id}", summary="Status, scores and failures of one evaluation")
    def get_eval(eval_id: str) -> dict[str, Any]:
        _safe_id(eval_id)
        workflow = _workflow_view(_workflow_state(eval_id))
        record: EvaluationRecord | None = deps.store.get_evaluation(eval_id)
        if workflow is None and record is None:
            raise _error(404, "not_found", f"no evaluation {eval_id!r}")
        output = (workflow or {}).get("output") or {}
        status: str
        if record is not None and record.status not in ("pending", "running"):
            status = record.status
        elif workflow is not None and workflow["status"] == "COMPLETED":
            status = str(output.get("outcome", "completed"))
        elif workflow is not None:
            status = _WORKFLOW_TO_STATUS.get(workflow["status"], "running")
        else:
            status = record.status if record is not None else "unknown"
        scores = [s.model_dump(mode="json") for s in deps.store.results(eval_id)] if record is not None else []
        if not scores:
            scores = list(output.get("scores", []))
        return {
            "eval_id": eval_id,
            "status": status,
            "reason": (record.reason if record is not None else None) or output.get("reason"),
            "workflow": workflow,
            "evaluation": record.model_dump(mode="json") if record is not None else None,
            "scores": scores,
            "failures": list(output.get("failures", [])),
        }

    @api.get("/evals/{eval_id}/results", summary="Score rows of one evaluation")
    def get_results(eval_id: str) -> dict[str, Any]:
        _safe_id(eval_id)
        record = deps.store.get_evaluation(eval_id)
        if record is None:
            raise _error(404, "not_found", f"no stored evaluation {eval_id!r}")
        rows = [s.model_dump(mode="json") for s in deps.store.results(eval_id)]
        return {"eval_id": eval_id, "status": record.status, "scores": rows}

    @api.delete("/evals/{eval_id}", summary="Cancel an evaluation: terminate its workflow and stop its runs")
    def cancel(eval_id: str) -> JSONResponse:
        _safe_id(eval_id)
        state = _workflow_state(eval_id)
        record: EvaluationRecord | None = deps.store.get_evaluation(eval_id)
        if state is None and record is None:
            raise _error(404, "not_found", f"no evaluation {eval_id!r}")
        wf_status = _workflow_view(state)["status"] if state is not None else None  # type: ignore[index]
        if record is not None and record.status == "cancelled":
            return JSONResponse({"eval_id": eval_id, "status": "cancelled", "already": True})
        if wf_status in ("COMPLETED", "FAILED") or (
            wf_status is None and record is not None and record.status not in ("pending", "running")
        ):
            current = record.status if record is not None else str(wf_status).lower()
            raise _error(409, "conflict", f"evaluation {eval_id!r} already finished ({current})", current=current)
        if wf_status is not None and wf_status != "TERMINATED":
            try:
                deps.workflows.terminate_workflow(eval_id, output={"eval_id": eval_id, "outcome": "cancelled"},
                                                  recursive=True)
            except Exception as exc:
                raise _error(503, "sidecar_unavailable", f"terminate failed: {type(exc).__name__}") from None
        deps.backend.cancel(eval_id)
        event = make_event("cancelled", f"{eval_id}.cancelled", eval_id, {"status": "cancelled"})
        deps.publisher.publish(settings.events_topic, event)
        if record is None:
            record = EvaluationRecord(eval_id=eval_id, status="cancelled")
        cancelled = record.model_copy(update={"status": "cancelled", "reason": "cancelled by request"})
        deps.store.record_evaluation(cancelled)
        get_logger(eval_id=eval_id).info("evaluation cancelled")
        return JSONResponse({"eval_id": eval_id, "status": "cancelled"})

    @api.get("/leaderboard", summary="Best score per model on a dataset and metric (paginated)")
    def leaderboard(
        dataset: Annotated[str | None, Query(max_length=100)] = None,
        metric: Annotated[str | None, Query(max_length=100)] = None,
        mode: Annotated[Literal["latest", "best"], Query(description="latest run's score or best score")] = "latest",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        rows = deps.store.leaderboard(dataset=dataset, metric=metric, mode=mode, limit=limit + 1, offset=offset)
        items = [_plain(r) for r in rows]
        more = len(items) > limit
        return {
            "items": items[:limit],
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if more else None,
        }

    @api.get("/compare", summary="Scores of two evaluations side by side, and per-example flips")
    def compare(
        a: Annotated[str, Query(max_length=63)],
        b: Annotated[str, Query(max_length=63)],
        flips_limit: Annotated[int, Query(ge=0, le=10000)] = 100,
    ) -> dict[str, Any]:
        _safe_id(a)
        _safe_id(b)
        for eval_id in (a, b):
            if deps.store.get_evaluation(eval_id) is None:
                raise _error(404, "not_found", f"no stored evaluation {eval_id!r}")
        rows = [_plain(r) for r in deps.store.compare(a, b)]
        flips_fn = getattr(deps.store, "flips", None)
        flips = [_plain(r) for r in flips_fn(a, b, limit=flips_limit)] if callable(flips_fn) and flips_limit else []
        return {"a": a, "b": b, "scores": rows, "flips": flips}

    app.include_router(open_routes)
    app.include_router(dapr_routes)
    app.include_router(api)
    app.include_router(decisions_router(deps), dependencies=[Depends(bearer)])  # /gate, /series (decisions_routes)
    return app


def _plain(row: Any) -> Any:
    dump = getattr(row, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if hasattr(row, "_asdict"):
        return row._asdict()
    return row
