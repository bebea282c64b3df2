"""The store's reads: evaluation rows and the analyst queries (leaderboard, compare, flips, examples); SQL in
budeval/storage/queries.py. A mixin of :class:`~budeval.storage.clickhouse.ClickHouseStore`, which provides
``_rows`` (one locked query)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from budeval.schemas.results import DatasetStatus, RunUsage
from budeval.storage.base import EvaluationRecord, ScoreRow
from budeval.storage.clickhouse_rows import EVALUATION_FIELDS, USAGE_FIELDS, _utc
from budeval.storage.queries import (
    EXAMPLES_SQL,
    CompareRow,
    ExampleRow,
    FlipDirection,
    FlipRow,
    FlipSummaryRow,
    LeaderboardMode,
    LeaderboardRow,
    LeaderboardSort,
    flip_summary_sql,
    flips_sql,
    leaderboard_sql,
    pair_by_model,
)


class StoreReads:
    """Reads over ``self._rows(what, sql, params)``."""

    def _rows(self, what: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    # -- evaluations -----------------------------------------------------------------------------------------------
    def _evaluation_query(self, where: str, order: str = "") -> str:
        columns = ", ".join(EVALUATION_FIELDS)
        return f"SELECT {columns} FROM evaluations FINAL WHERE {where} {order} LIMIT 1"

    @staticmethod
    def _to_record(row: tuple[Any, ...]) -> EvaluationRecord:
        values = dict(zip(EVALUATION_FIELDS, row, strict=True))
        values["provenance"] = json.loads(values["provenance"] or "{}")
        values["labels"] = dict(values["labels"] or {})
        values["datasets"] = list(values["datasets"] or [])
        values["created_at"] = _utc(values["created_at"])
        values["finished_at"] = _utc(values["finished_at"])
        return EvaluationRecord.model_validate(values)

    def get_evaluation(self, eval_id: str) -> EvaluationRecord | None:
        rows = self._rows("read evaluation", self._evaluation_query("eval_id = %(e)s"), {"e": eval_id})
        return self._to_record(rows[0]) if rows else None

    def find_reusable(self, params_hash: str) -> EvaluationRecord | None:
        if not params_hash:
            return None
        sql = self._evaluation_query(
            "params_hash = %(h)s AND status = 'completed'",
            "ORDER BY finished_at DESC NULLS LAST, updated_at DESC",
        )
        rows = self._rows("find reusable evaluation", sql, {"h": params_hash})
        return self._to_record(rows[0]) if rows else None

    def evaluations_to_tend(self, limit: int = 100) -> list[EvaluationRecord]:
        """Rows the service's housekeeping looks after (budeval/service/housekeeping.py): still ``pending`` or
        ``running`` (is their workflow still there?) or waiting for their archive (``archive_pending``); oldest
        first, at most ``limit``."""
        columns = ", ".join(EVALUATION_FIELDS)
        sql = (
            f"SELECT {columns} FROM evaluations FINAL "
            "WHERE status IN ('pending', 'running') OR archive_pending "
            "ORDER BY created_at ASC NULLS FIRST, eval_id LIMIT %(n)s"
        )
        return [self._to_record(r) for r in self._rows("read evaluations to tend", sql, {"n": int(limit)})]

    # -- queries ---------------------------------------------------------------------------------------------------
    def results(self, eval_id: str) -> list[ScoreRow]:
        rows = self._rows(
            "read results",
            """
            SELECT eval_id, toString(run_id), toString(model), toString(dataset), toString(metric), score,
                   toString(status), toString(version), toString(mode), reason, toString(judge)
            FROM scores FINAL WHERE eval_id = %(e)s
            ORDER BY model, dataset, metric, run_id
            """,
            {"e": eval_id},
        )
        return [
            ScoreRow(
                eval_id=e,
                run_id=r,
                model=m,
                dataset=d,
                metric=me,
                score=s,
                status=st,
                version=v,
                mode=mo,
                reason=why,
                judge=judge or None,
            )
            for e, r, m, d, me, s, st, v, mo, why, judge in rows
        ]

    def statuses(self, eval_id: str) -> list[DatasetStatus]:
        rows = self._rows(
            "read dataset statuses",
            """
            SELECT toString(model), toString(dataset), toString(status), reason FROM dataset_status FINAL
            WHERE eval_id = %(e)s ORDER BY model, dataset, run_id
            """,
            {"e": eval_id},
        )
        return [DatasetStatus(model=m, dataset=d, status=s, reason=r) for m, d, s, r in rows]

    def usage(self, eval_id: str) -> dict[str, RunUsage]:
        """run id -> the requests and tokens that run recorded (only runs of an endpoint model have a row)."""
        rows = self._rows(
            "read run usage",
            f"SELECT toString(run_id), {', '.join(USAGE_FIELDS)} FROM run_usage FINAL WHERE eval_id = %(e)s"
            " ORDER BY run_id",
            {"e": eval_id},
        )
        return {row[0]: RunUsage(**dict(zip(USAGE_FIELDS, row[1:], strict=True))) for row in rows}

    def leaderboard(
        self,
        datasets: Sequence[str] | None = None,
        metric: str | None = None,
        mode: LeaderboardMode = "latest",
        limit: int = 50,
        offset: int = 0,
        *,
        dataset: str | None = None,
        sort: LeaderboardSort = "rank",
        descending: bool = False,
    ) -> list[LeaderboardRow]:
        """Models ranked per metric by the mean of their per-dataset scores (``latest`` or ``best`` each).

        ``datasets`` empty or None: every dataset; ``dataset`` is a one-dataset shorthand. Ordered by metric, then
        by how many of the datasets a model covers, then by mean score (descending), then model name. ``sort``
        (and ``descending``) orders the ranked rows otherwise within each metric: by model, score or datasets covered.
        """
        wanted = list(datasets or []) + ([dataset] if dataset else [])
        if mode not in ("latest", "best"):
            raise ValueError(f"mode must be latest or best, not {mode!r}")
        if sort not in ("rank", "model", "score", "datasets"):
            raise ValueError(f"sort must be rank, model, score or datasets, not {sort!r}")
        sql = leaderboard_sql(mode, with_datasets=bool(wanted), with_metric=metric is not None, sort=sort,
                              descending=descending)
        params: dict[str, Any] = {"limit": max(0, int(limit)), "offset": max(0, int(offset))}
        if wanted:
            params["datasets"] = wanted
        if metric is not None:
            params["metric"] = metric
        rows = self._rows("leaderboard", sql, params)
        return [
            LeaderboardRow(
                rank=int(rank),
                model=model,
                metric=met,
                score=float(mean),
                datasets=int(covered),
                scores=dict(zip(ds, (float(s) for s in sc), strict=True)),
                eval_ids=dict(zip(ds, ev, strict=True)),
            )
            for rank, model, met, mean, covered, ds, sc, ev in rows
        ]

    def compare(self, eval_a: str, eval_b: str) -> list[CompareRow]:
        """Per (model, dataset, metric): A's and B's score and B - A (models paired as :func:`pair_by_model`)."""
        rows_a = [r for r in self.results(eval_a) if r.metric]
        rows_b = [r for r in self.results(eval_b) if r.metric]
        by_model = pair_by_model({r.model for r in rows_a}, {r.model for r in rows_b})

        def key(row: ScoreRow) -> tuple[str, str, str]:
            return (row.model if by_model else "", row.dataset, row.metric)

        side_a = {key(r): r for r in rows_a}
        side_b = {key(r): r for r in rows_b}
        out: list[CompareRow] = []
        for k in sorted(set(side_a) | set(side_b)):
            a, b = side_a.get(k), side_b.get(k)
            score_a = a.score if a else None
            score_b = b.score if b else None
            out.append(
                CompareRow(
                    model_a=a.model if a else None,
                    model_b=b.model if b else None,
                    dataset=k[1],
                    metric=k[2],
                    score_a=score_a,
                    score_b=score_b,
                    delta=None if score_a is None or score_b is None else round(score_b - score_a, 10),
                    status_a=a.status if a else None,
                    status_b=b.status if b else None,
                )
            )
        return out

    def examples(self, eval_id: str, limit: int = 10) -> list[ExampleRow]:
        """The first ``limit`` stored predictions of each (model, dataset) of ``eval_id`` with their verdicts."""
        rows = self._rows("read examples", EXAMPLES_SQL, {"e": eval_id, "limit": max(0, int(limit))})
        return [
            ExampleRow(
                model=m,
                dataset=d,
                example_index=int(i),
                prompt=p,
                prediction=pr,
                gold=g,
                correct=c,
                replica=int(r),
                score=sc,
                judge_answer=ja,
            )
            for m, d, i, p, pr, g, c, r, sc, ja in rows
        ]

    def replay_answers(self, eval_id: str, model: str, datasets: list[str]) -> dict[str, list[str]]:
        """The stored predictions of ``model`` on ``datasets`` in ``eval_id``, for re-judging them (``budeval
        rejudge``): prompt text as stored -> predictions in (dataset, example, replica) order. Empty when none."""
        rows = self._rows(
            "read predictions to replay",
            "SELECT prompt, prediction FROM predictions FINAL WHERE eval_id = %(e)s AND model = %(m)s"
            " AND dataset IN %(d)s ORDER BY dataset, example_index, replica, run_id",
            {"e": eval_id, "m": model, "d": list(datasets)},
        )
        out: dict[str, list[str]] = {}
        for prompt, prediction in rows:
            out.setdefault(prompt, []).append(prediction)
        return out

    def _prediction_models(self, eval_id: str) -> set[str]:
        rows = self._rows(
            "read prediction models",
            "SELECT DISTINCT toString(model) FROM predictions WHERE eval_id = %(e)s",
            {"e": eval_id},
        )
        return {str(r[0]) for r in rows}

    def flips(
        self, eval_a: str, eval_b: str, dataset: str | None = None, limit: int = 100, *,
        direction: FlipDirection | None = None, text: str | None = None, offset: int = 0,
    ) -> list[FlipRow]:
        """Examples that A judged correct and B wrong, or the other way round (both judged); ``direction`` keeps one
        way, ``text`` those whose prompt, predictions or gold contain it (case-insensitive); ``limit`` from
        ``offset``."""
        by_model = pair_by_model(self._prediction_models(eval_a), self._prediction_models(eval_b))
        params: dict[str, Any] = {"a": eval_a, "b": eval_b, "limit": max(0, int(limit)), "offset": max(0, int(offset))}
        if dataset is not None:
            params["dataset"] = dataset
        if direction is not None:
            params["a_ok"] = direction == "correct_to_wrong"
        if text:
            params["text"] = text
        sql = flips_sql(by_model, with_dataset=dataset is not None, with_direction=direction is not None,
                        with_text=bool(text))
        rows = self._rows("flips", sql, params)
        return [
            FlipRow(
                model_a=ma,
                model_b=mb,
                dataset=ds,
                example_index=int(idx),
                replica=int(replica),
                direction=direction,
                gold=gold,
                prediction_a=pa,
                prediction_b=pb,
                prompt=prompt,
            )
            for ma, mb, ds, idx, replica, direction, gold, pa, pb, prompt in rows
        ]

    def flip_summary(self, eval_a: str, eval_b: str) -> list[FlipSummaryRow]:
        by_model = pair_by_model(self._prediction_models(eval_a), self._prediction_models(eval_b))
        rows = self._rows("flip summary", flip_summary_sql(by_model), {"a": eval_a, "b": eval_b})
        return [
            FlipSummaryRow(
                model_a=ma, model_b=mb, dataset=ds, compared=int(n), correct_to_wrong=int(cw), wrong_to_correct=int(wc)
            )
            for ma, mb, ds, n, cw, wc in rows
        ]

    def count(self, table: str, eval_id: str, final: bool = False) -> int:
        """Rows of one evaluation in one table (tests and operators: proves idempotent stores)."""
        if table not in ("evaluations", "scores", "dataset_status", "predictions"):
            raise ValueError(f"unknown table {table!r}")
        suffix = " FINAL" if final else ""
        rows = self._rows("count", f"SELECT count() FROM {table}{suffix} WHERE eval_id = %(e)s", {"e": eval_id})
        return int(rows[0][0])
