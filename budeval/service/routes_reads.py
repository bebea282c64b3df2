"""Read routes of the HTTP API (bearer token): score rows of one evaluation, the leaderboard, comparisons."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from budeval.service.api_common import ServiceDeps, api_error, plain, safe_id


def read_routes(deps: ServiceDeps, router: APIRouter) -> None:
    """Add ``GET /evals/{id}/results``, ``GET /leaderboard`` and ``GET /compare`` to ``router``."""

    @router.get("/evals/{eval_id}/results", summary="Score rows of one evaluation")
    def get_results(eval_id: str) -> dict[str, Any]:
        safe_id(eval_id)
        record = deps.store.get_evaluation(eval_id)
        if record is None:
            raise api_error(404, "not_found", f"no stored evaluation {eval_id!r}")
        rows = [s.model_dump(mode="json") for s in deps.store.results(eval_id)]
        return {"eval_id": eval_id, "status": record.status, "scores": rows}

    @router.get("/leaderboard", summary="Best score per model on a dataset and metric (paginated)")
    def leaderboard(
        dataset: Annotated[str | None, Query(max_length=100)] = None,
        metric: Annotated[str | None, Query(max_length=100)] = None,
        mode: Annotated[Literal["latest", "best"], Query(description="latest run's score or best score")] = "latest",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        rows = deps.store.leaderboard(dataset=dataset, metric=metric, mode=mode, limit=limit + 1, offset=offset)
        items = [plain(r) for r in rows]
        more = len(items) > limit
        return {
            "items": items[:limit],
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if more else None,
        }

    @router.get("/compare", summary="Scores of two evaluations side by side, and per-example flips")
    def compare(
        a: Annotated[str, Query(max_length=63)],
        b: Annotated[str, Query(max_length=63)],
        flips_limit: Annotated[int, Query(ge=0, le=10000)] = 100,
    ) -> dict[str, Any]:
        safe_id(a)
        safe_id(b)
        for eval_id in (a, b):
            if deps.store.get_evaluation(eval_id) is None:
                raise api_error(404, "not_found", f"no stored evaluation {eval_id!r}")
        rows = [plain(r) for r in deps.store.compare(a, b)]
        flips_fn = getattr(deps.store, "flips", None)
        flips = [plain(r) for r in flips_fn(a, b, limit=flips_limit)] if callable(flips_fn) and flips_limit else []
        return {"a": a, "b": b, "scores": rows, "flips": flips}
