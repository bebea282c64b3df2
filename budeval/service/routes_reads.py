"""Read routes of the HTTP API (bearer token): score rows (and examples) of one evaluation, the leaderboard,
comparisons and the reuse lookup. The CLI's read commands use them when the service holds the embedded store
(budeval/cli/remote_store.py), so each answers what the store's own query returns, row for row."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from budeval.service.api_common import ServiceDeps, api_error, plain, safe_id


def read_routes(deps: ServiceDeps, router: APIRouter) -> None:
    """Add ``GET /evals/{id}/results``, ``GET /store``, ``GET /leaderboard``, ``GET /compare`` and
    ``GET /reuse/{hash}``."""

    @router.get("/evals/{eval_id}/results", summary="Score rows of one evaluation (and its first examples)")
    def get_results(
        eval_id: str,
        examples: Annotated[int | None, Query(ge=0, le=10000, description="first N examples per dataset")] = None,
    ) -> dict[str, Any]:
        safe_id(eval_id)
        record = deps.store.get_evaluation(eval_id)
        if record is None:
            raise api_error(404, "not_found", f"no stored evaluation {eval_id!r}")
        rows = [s.model_dump(mode="json") for s in deps.store.results(eval_id)]
        answer = {"eval_id": eval_id, "status": record.status, "scores": rows,
                  "evaluation": record.model_dump(mode="json"),
                  "usage": {run: u.model_dump(mode="json") for run, u in deps.store.usage(eval_id).items()}}
        if examples is not None:
            answer["examples"] = [plain(e) for e in deps.store.examples(eval_id, examples)]
        return answer

    @router.get("/store", summary="The store this service holds (its DSN without the password)")
    def held_store() -> dict[str, Any]:
        from budeval.storage.factory import as_store_dsn, redact_dsn

        return {"store": redact_dsn(as_store_dsn(deps.settings.resolved_store_dsn()))}

    @router.get("/leaderboard", summary="Models ranked on a dataset or a set of datasets (paginated)")
    def leaderboard(
        dataset: Annotated[list[str] | None, Query(max_length=100, description="repeat for a set")] = None,
        metric: Annotated[str | None, Query(max_length=100)] = None,
        mode: Annotated[Literal["latest", "best"], Query(description="latest run's score or best score")] = "latest",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        rows = deps.store.leaderboard(datasets=dataset, metric=metric, mode=mode, limit=limit + 1, offset=offset)
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
        dataset: Annotated[str | None, Query(max_length=200, description="only flips of this dataset")] = None,
        summary: Annotated[bool, Query(description="also the flip counts per dataset")] = False,
    ) -> dict[str, Any]:
        safe_id(a)
        safe_id(b)
        for eval_id in (a, b):
            if deps.store.get_evaluation(eval_id) is None and not deps.store.results(eval_id):
                raise api_error(404, "not_found", f"no stored evaluation {eval_id!r}")
        rows = [plain(r) for r in deps.store.compare(a, b)]
        flips_fn = getattr(deps.store, "flips", None)
        flips = (
            [plain(r) for r in flips_fn(a, b, dataset, flips_limit)] if callable(flips_fn) and flips_limit else []
        )
        answer: dict[str, Any] = {"a": a, "b": b, "scores": rows, "flips": flips}
        if summary:
            answer["flip_summary"] = [plain(r) for r in deps.store.flip_summary(a, b)]
        return answer

    @router.get("/reuse/{params_hash}", summary="The newest completed evaluation with this identity (reuse lookup)")
    def reusable(params_hash: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]) -> dict[str, Any]:
        found = deps.store.find_reusable(params_hash)
        if found is None:
            raise api_error(404, "not_found", "no completed evaluation with this identity")
        return {"evaluation": found.model_dump(mode="json")}
