"""The Dapr app and HTTP API of budeval: subscription endpoint, evaluations API, health and metrics.

Routes (OpenAPI at ``/docs``):

* Dapr: ``GET /dapr/subscribe`` (programmatic subscription to the request topic) and ``POST /events/requests``
  (a CloudEvent in; Dapr's answer ``SUCCESS``, ``RETRY`` or ``DROP``), guarded by Dapr's app API token when set.
* API (bearer token): ``POST /evals`` (``?dry_run=true``: the plan of ``budeval plan``, nothing starts),
  ``GET /evals/{id}``, ``DELETE /evals/{id}`` (routes_evals.py); ``GET /evals/{id}/results``,
  ``GET /leaderboard``, ``GET /compare``, ``GET /reuse/{identity}`` (routes_reads.py); ``GET /gate``,
  ``GET /series/{series}`` (decisions_routes.py).
* Web UI: ``/ui/...`` (budeval/ui): a token login sets an HttpOnly, SameSite=Strict session cookie; forms carry a
  CSRF token (docs/ui.md).
* Open: ``/healthz`` (the process answers), ``/readyz`` (store and sidecar reachable); ``/metrics`` (Prometheus)
  open, behind the bearer token or off (``metrics_access``); ``/docs`` and ``/openapi.json`` on or off
  (``docs_enabled``). docs/security.md.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from budeval import __version__
from budeval.errors import BudevalError, NotFoundError, TransientError
from budeval.logs import get_logger
from budeval.service.admission import Admission, Decision
from budeval.service.api_common import ApiError, ServiceDeps, read_body
from budeval.service.auth import DAPR_TOKEN_HEADER
from budeval.service.decisions_routes import decisions_router
from budeval.service.routes_evals import cancel_view, eval_routes, status_view
from budeval.service.routes_reads import read_routes
from budeval.service.timing import ServerTimingMiddleware
from budeval.ui import UiDeps, ui_router

__all__ = ["REQUEST_ROUTE", "ApiError", "ServiceDeps", "create_app"]

REQUEST_ROUTE = "/events/requests"

_bearer = HTTPBearer(auto_error=False, description="BUDEVAL_API_TOKEN (or the file BUDEVAL_API_TOKEN_FILE)")


def create_app(deps: ServiceDeps) -> FastAPI:
    settings, metrics, auth = deps.settings, deps.metrics, deps.auth
    admission = Admission(settings, deps.workflows, deps.publisher, deps.suites, metrics, deps.endpoints, deps.store)
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
    app.add_middleware(ServerTimingMiddleware)  # Server-Timing: app;dur=<ms> (timing.py)

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
        body = await read_body(request)
        from starlette.concurrency import run_in_threadpool

        try:
            decision: Decision = await run_in_threadpool(admission.handle, body, "topic")
        except Exception as exc:  # never crash the delivery loop; an unexpected bug is logged and retried by Dapr
            log.error("request handling failed", error=type(exc).__name__, message=str(exc)[:300])
            return {"status": "RETRY"}
        answer = {"accepted": "SUCCESS", "duplicate": "SUCCESS", "rejected": "DROP", "retry": "RETRY"}
        return {"status": answer[decision.kind]}

    # -- API -------------------------------------------------------------------------------------------------------
    eval_routes(deps, admission, api)
    read_routes(deps, api)

    app.include_router(open_routes)
    app.include_router(dapr_routes)
    app.include_router(api)
    app.include_router(decisions_router(deps), dependencies=[Depends(bearer)])  # /gate, /series (decisions_routes)
    app.include_router(ui_router(UiDeps(store=deps.store, api_token=auth.api_token,
                                        status=lambda eval_id: _ui_status(deps, eval_id),
                                        cancel=lambda eval_id: cancel_view(deps, eval_id))))
    return app


def _ui_status(deps: ServiceDeps, eval_id: str) -> dict[str, Any] | None:
    """:func:`status_view` for the web UI: an unreachable workflow engine as an ``error`` body, not an exception."""
    try:
        return status_view(deps, eval_id)
    except ApiError as exc:
        return exc.body

