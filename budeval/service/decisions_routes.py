"""The decision routes of the HTTP API: ``GET /gate`` (the regression gate of ``budeval gate``) and
``GET /series/{series}`` (the checkpoint series of ``budeval series``). Registered by ``create_app`` behind the
same bearer token as the other read routes; docs/decisions.md.

Answers: 200 with the report (any verdict: the gate's verdict is data, not an HTTP error); 404 an unknown
evaluation, series or a baseline rule that matches nothing; 409 a refused gate (the example sets differ or
nothing pairs), with the overlap counts; 422 bad parameters.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool

from budeval.decisions.gate import GateOptions, evaluate_gate
from budeval.decisions.series import MAX_LISTED, build_series
from budeval.decisions.stats import Correction
from budeval.errors import GateRefusedError, NotFoundError, ValidationError
from budeval.schemas.request import BASELINE_MAX


def _error(status: int, reason: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": reason, "message": message, **extra}, status_code=status)


def decisions_router(deps: Any) -> APIRouter:
    """The routes over ``deps.store`` (a ClickHouse store or a wrapper forwarding its queries)."""
    router = APIRouter(tags=["decisions"])

    @router.get("/gate", summary="Paired regression gate of a candidate against a baseline")
    async def gate(
        baseline: Annotated[str, Query(max_length=BASELINE_MAX, description="eval id, best:<experiment>, "
                                       "latest:<k>=<v>")],
        candidate: Annotated[str, Query(max_length=63)],
        tolerance: Annotated[float, Query(description="points, 0..100 (GateOptions)")] = 1.0,
        alpha: Annotated[float, Query(description="1e-6 <= alpha < 1")] = 0.05,
        correction: Correction = "holm",
        seed: Annotated[int, Query(description="0..2^63-1")] = 0,
        iterations: Annotated[int, Query(description="100..100000")] = 2000,
    ) -> JSONResponse:
        try:  # the bounds are GateOptions' (budeval/schemas/request.py: one place for the request, CLI and API)
            options = GateOptions(tolerance=tolerance, alpha=alpha, correction=correction, seed=seed,
                                  iterations=iterations)
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return _error(422, "invalid_request", f"{where}: {first['msg']}")
        try:
            report = await run_in_threadpool(evaluate_gate, deps.store, baseline, candidate, options)
        except GateRefusedError as exc:
            return _error(409, exc.reason, exc.message, overlap=exc.overlap)
        except NotFoundError as exc:
            return _error(404, exc.reason, exc.message)
        except ValidationError as exc:
            return _error(422, exc.reason, exc.message)
        return JSONResponse(report.model_dump(mode="json"))

    @router.get("/series/{series}", summary="Learning curves and per-example evolution of a checkpoint series")
    async def series(
        series: Annotated[str, Path(max_length=128)],
        dataset: Annotated[str | None, Query(max_length=200)] = None,
        alpha: Annotated[float, Query(description="1e-6 <= alpha < 1 (build_series)")] = 0.05,
        correction: Correction = "holm",
        examples: Annotated[int, Query(ge=0, le=MAX_LISTED)] = 10,
    ) -> JSONResponse:
        try:
            report = await run_in_threadpool(
                lambda: build_series(
                    deps.store, series, dataset=dataset, alpha=alpha, correction=correction, limit=examples
                )
            )
        except NotFoundError as exc:
            return _error(404, exc.reason, exc.message)
        except ValidationError as exc:  # alpha, a name no series can have (build_series)
            return _error(422, exc.reason, exc.message)
        return JSONResponse(report.model_dump(mode="json"))

    return router
