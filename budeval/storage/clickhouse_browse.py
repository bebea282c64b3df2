"""The store's browsing reads for the web UI (budeval/ui): pickers, pages of predictions, one example across
evaluations, a series' heatmap and the leaderboard's paired cells. SQL in budeval/storage/browse_queries.py and
budeval/storage/decision_queries.py. A mixin of :class:`~budeval.storage.clickhouse.ClickHouseStore`, which provides
``_rows`` (one locked query)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from budeval.decisions.gate import PairedDataset
from budeval.decisions.series import Checkpoint
from budeval.storage.browse_queries import (
    CATALOG_SQL,
    EXAMPLE_HISTORY_SQL,
    RECENT_EVALUATIONS_SQL,
    SERIES_NAMES_SQL,
    Catalog,
    EvaluationSummary,
    ExampleFilter,
    ExampleHistoryRow,
    ExamplePageRow,
    MatrixRow,
    examples_page_sql,
)
from budeval.storage.clickhouse_decisions import _finite
from budeval.storage.clickhouse_rows import _utc
from budeval.storage.decision_queries import paired_cells_sql, series_matrix_sql

#: One leaderboard cell: (eval_id, model, dataset).
Cell = tuple[str, str, str]


class StoreBrowse:
    """Browsing reads over ``self._rows(what, sql, params)``."""

    def _rows(self, what: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def catalog(self, series_limit: int = 500) -> Catalog:
        """Datasets and metrics that have a score, the models scored, and up to ``series_limit`` series names."""
        rows = self._rows("catalog", CATALOG_SQL)
        datasets, metrics, models = rows[0] if rows else ([], [], [])
        series = self._rows("series names", SERIES_NAMES_SQL, {"limit": max(1, int(series_limit))})
        return Catalog(datasets=list(datasets), metrics=list(metrics), models=list(models),
                       series=[str(r[0]) for r in series])

    def recent_evaluations(self, limit: int = 200) -> list[EvaluationSummary]:
        """The ``limit`` newest evaluations (by creation time)."""
        rows = self._rows("recent evaluations", RECENT_EVALUATIONS_SQL, {"limit": max(1, int(limit))})
        return [
            EvaluationSummary(eval_id=e, status=s, model_name=m, checkpoint_series=c, created_at=_utc(t))
            for e, s, m, c, t in rows
        ]

    def examples_page(self, where: ExampleFilter, limit: int = 50, offset: int = 0) -> list[ExamplePageRow]:
        """Stored predictions matching ``where``: ``limit`` of them from ``offset`` (sorting key order)."""
        params: dict[str, Any] = {"limit": max(0, int(limit)), "offset": max(0, int(offset))}
        params.update({k: v for k, v in where.model_dump().items() if v is not None and k != "unjudged"})
        rows = self._rows("examples page", examples_page_sql(where), params)
        return [
            ExamplePageRow(eval_id=e, model=m, dataset=d, example_index=int(i), replica=int(r), prompt=p,
                           prediction=pr, gold=g, correct=c)
            for e, m, d, i, r, p, pr, g, c in rows
        ]

    def example_history(self, eval_ids: Sequence[str], dataset: str, example_index: int) -> list[ExampleHistoryRow]:
        """One example (``dataset``, ``example_index``) in each of ``eval_ids``: every model's and replica's
        prediction with its verdict (evaluations that lack it are absent)."""
        if not eval_ids:
            return []
        params = {"ids": list(eval_ids), "dataset": dataset, "index": int(example_index)}
        rows = self._rows("example history", EXAMPLE_HISTORY_SQL, params)
        return [
            ExampleHistoryRow(eval_id=e, model=m, replica=int(r), prompt=p, prediction=pr, gold=g, correct=c, score=s)
            for e, m, r, p, pr, g, c, s in rows
        ]

    def series_matrix(
        self, checkpoints: list[Checkpoint], dataset: str | None, limit: int = 50, offset: int = 0
    ) -> tuple[list[MatrixRow], int]:
        """A page of the series' examples x checkpoints matrix and the number of examples in all."""
        if not checkpoints:
            return [], 0
        params: dict[str, Any] = {
            "ids": [c.eval_id for c in checkpoints], "positions": [c.position for c in checkpoints],
            "limit": max(0, int(limit)), "offset": max(0, int(offset)),
        }
        if dataset is not None:
            params["dataset"] = dataset
        rows = self._rows("series matrix", series_matrix_sql(dataset is not None), params)
        total = int(rows[0][4]) if rows else 0
        out = [
            MatrixRow(dataset=d, example_index=int(i),
                      values={int(p): float(m) for p, m in zip(ps, ms, strict=True)})
            for d, i, ps, ms, _ in rows
        ]
        return out, total

    def paired_cells(self, pairs: Sequence[tuple[Cell, Cell]]) -> list[PairedDataset | None]:
        """For each (baseline cell, candidate cell) on the same dataset the gate's paired aggregates
        (:class:`PairedDataset`), None for a pair with no row; one query for all pairs."""
        if not pairs:
            return []
        sides = [(*cell, i + 1, side == 0) for i, pair in enumerate(pairs) for side, cell in enumerate(pair)]
        params: dict[str, Any] = {"sides": sides, "cells": sorted({cell for pair in pairs for cell in pair})}
        found: dict[int, PairedDataset] = {}
        for row in self._rows("paired cells", paired_cells_sql(), params):
            pair, paired, only_b, only_c, single, losses, gains, mean_b, mean_c, hist, span, mixed = row
            (base, cand), values, counts = pairs[int(pair) - 1], hist[0], hist[1]
            found[int(pair) - 1] = PairedDataset(
                model_baseline=base[1], model_candidate=cand[1], dataset=base[2], paired=int(paired),
                only_baseline=int(only_b), only_candidate=int(only_c), single_verdicts=bool(single) and int(paired) > 0,
                losses=int(losses), gains=int(gains), mean_baseline=_finite(mean_b), mean_candidate=_finite(mean_c),
                diff_values=[float(v) for v in values], diff_counts=[int(c) for c in counts],
                value_range=_finite(span), mixed=int(mixed),
            )
        return [found.get(i) for i in range(len(pairs))]
