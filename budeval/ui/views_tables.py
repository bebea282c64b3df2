"""Context builders of the UI's table pages: the leaderboard and the examples browser (one function per page: the
page's query parameters in, the template's context out; every read through the store's query layer)."""

from __future__ import annotations

from typing import Any, Literal

from budeval.storage.browse_queries import ExampleFilter
from budeval.ui.tiers import tiers

PAGE_SIZE = 25
Sort = Literal["rank", "model", "score", "datasets"]


def leaderboard_context(
    store: Any, *, metric: str | None, datasets: list[str], mode: Literal["latest", "best"], sort: Sort,
    descending: bool, offset: int, size: int = PAGE_SIZE,
) -> dict[str, Any]:
    """Rows of one metric over a dataset set (all datasets when empty), ``latest`` or ``best`` score per dataset, a
    page of :data:`PAGE_SIZE` from ``offset`` in ``sort`` order, each with its significance tier against the leader
    (rank 1, fetched on its own when the page does not show it)."""
    catalog = store.catalog()
    if metric is None or metric not in catalog.metrics:
        metric = "accuracy" if "accuracy" in catalog.metrics else (catalog.metrics[0] if catalog.metrics else None)
    chosen = [d for d in datasets if d in catalog.datasets]
    common = {"datasets": chosen or None, "metric": metric, "mode": mode}
    rows = store.leaderboard(**common, limit=size + 1, offset=offset, sort=sort, descending=descending)
    more = len(rows) > size
    rows = rows[:size]
    leader = next((r for r in rows if r.rank == 1), None)
    if leader is None and rows:
        top = store.leaderboard(**common, limit=1, offset=0)
        leader = top[0] if top else None
    shown = sorted({d for r in rows for d in r.scores})
    params = {"metric": metric, "mode": mode, "sort": sort, "dir": "desc" if descending else "asc",
              "size": size if size != PAGE_SIZE else None}
    return {
        "catalog": catalog,
        "metric": metric,
        "datasets": chosen,
        "mode": mode,
        "sort": sort,
        "descending": descending,
        "rows": list(zip(rows, tiers(store, leader, rows), strict=True)),
        "columns": shown,
        "leader": leader,
        "offset": offset,
        "next_offset": offset + size if more else None,
        "prev_offset": max(0, offset - size) if offset else None,
        "params": params,
        "dataset_params": [("datasets", d) for d in chosen],
    }


def examples_context(store: Any, where: ExampleFilter, offset: int, size: int = PAGE_SIZE) -> dict[str, Any]:
    """A page of ``size`` stored predictions matching ``where`` from ``offset``, and the pickers' choices."""
    rows = store.examples_page(where, limit=size + 1, offset=offset)
    more = len(rows) > size
    correctness = "unjudged" if where.unjudged else {True: "right", False: "wrong", None: ""}[where.correct]
    params = {"eval_id": where.eval_id, "dataset": where.dataset, "model": where.model, "correct": correctness,
              "text": where.text, "size": size if size != PAGE_SIZE else None}
    return {
        "catalog": store.catalog(),
        "recent": store.recent_evaluations(200),
        "where": where,
        "correctness": correctness,
        "rows": rows[:size],
        "offset": offset,
        "next_offset": offset + size if more else None,
        "prev_offset": max(0, offset - size) if offset else None,
        "params": params,
    }
