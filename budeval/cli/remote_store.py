"""The store's read queries answered by the running service's HTTP API, for the CLI's read commands while the service
holds the embedded chDB store (chDB is one process per data folder).

:class:`ServiceStore` has the methods of :class:`budeval.storage.clickhouse.ClickHouseStore` those commands call
(same arguments, same row models), plus :meth:`ServiceStore.gate` and :meth:`ServiceStore.series`, which the
service computes (``GET /gate``, ``GET /series/{series}``). The rows come back through the models' own JSON, so a
command prints the same text and JSON either way. Routes: budeval/service/routes_reads.py, decisions_routes.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from budeval.cli.api_client import call_api
from budeval.cli.locate import api_url
from budeval.config import Settings
from budeval.decisions.gate import GateOptions, GateReport
from budeval.decisions.series import SeriesReport
from budeval.errors import NotFoundError
from budeval.schemas.results import RunUsage
from budeval.storage.base import EvaluationRecord, ScoreRow
from budeval.storage.queries import CompareRow, ExampleRow, FlipRow, FlipSummaryRow, LeaderboardRow

#: Rows per ``GET /leaderboard`` page (the route's maximum).
PAGE = 1000


class ServiceStore:
    """Read queries over ``GET`` routes of the service at :func:`budeval.cli.locate.api_url` (bearer token as the
    other commands find it). Errors are :func:`budeval.cli.api_client.call_api`'s."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = api_url(settings)
        #: ``GET /evals/{id}/results`` answers of this command (one command's reads see one state, asked once)
        self._answers: dict[tuple[str, int | None], dict[str, Any] | None] = {}

    def _get(self, path: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None) -> dict[str, Any]:
        return call_api("GET", path, params, self.settings)

    def held_store(self) -> str | None:
        """The store the service holds (redacted DSN); None from a service without ``GET /store``."""
        try:
            store = self._get("/store").get("store")
        except NotFoundError:
            return None
        return store if isinstance(store, str) else None

    def ping(self) -> None:
        """Raises :class:`budeval.errors.TransientError` when the service does not answer."""
        call_api("GET", "/healthz", None, self.settings)

    def _results(self, eval_id: str, examples: int | None = None) -> dict[str, Any] | None:
        key = (eval_id, examples)
        if key not in self._answers:
            params = {"examples": examples} if examples is not None else None
            try:
                self._answers[key] = self._get(f"/evals/{quote(eval_id, safe='')}/results", params)
            except NotFoundError:
                self._answers[key] = None
        return self._answers[key]

    def get_evaluation(self, eval_id: str) -> EvaluationRecord | None:
        doc = self._results(eval_id)
        record = (doc or {}).get("evaluation")
        return EvaluationRecord.model_validate(record) if record else None

    def results(self, eval_id: str) -> list[ScoreRow]:
        doc = self._results(eval_id)
        return [ScoreRow.model_validate(r) for r in (doc or {}).get("scores", [])]

    def usage(self, eval_id: str) -> dict[str, RunUsage]:
        """run id -> requests and tokens (runs of an endpoint model), as the store's ``usage``."""
        doc = self._results(eval_id)
        return {run: RunUsage.model_validate(u) for run, u in ((doc or {}).get("usage") or {}).items()}

    def examples(self, eval_id: str, limit: int = 10) -> list[ExampleRow]:
        doc = self._results(eval_id, examples=limit)
        return [ExampleRow.model_validate(r) for r in (doc or {}).get("examples", [])]

    def find_reusable(self, params_hash: str) -> EvaluationRecord | None:
        if not params_hash:
            return None
        try:
            doc = self._get(f"/reuse/{quote(params_hash, safe='')}")
        except NotFoundError:
            return None
        return EvaluationRecord.model_validate(doc["evaluation"])

    def leaderboard(
        self, datasets: Sequence[str] | None = None, metric: str | None = None, mode: str = "latest",
        limit: int = 50, offset: int = 0,
    ) -> list[LeaderboardRow]:
        """The rows ``offset .. offset + limit`` (fetched in pages of at most :data:`PAGE`)."""
        rows: list[LeaderboardRow] = []
        while len(rows) < limit:
            params: list[tuple[str, Any]] = [("dataset", d) for d in datasets or []]
            params += [("mode", mode), ("limit", min(PAGE, limit - len(rows))), ("offset", offset + len(rows))]
            if metric is not None:
                params.append(("metric", metric))
            doc = self._get("/leaderboard", params)
            rows += [LeaderboardRow.model_validate(r) for r in doc.get("items", [])]
            if doc.get("next_offset") is None:
                break
        return rows

    def _compare(self, a: str, b: str, **params: Any) -> dict[str, Any]:
        return self._get("/compare", {"a": a, "b": b, **{k: v for k, v in params.items() if v is not None}})

    def compare(self, eval_a: str, eval_b: str) -> list[CompareRow]:
        doc = self._compare(eval_a, eval_b, flips_limit=0)
        return [CompareRow.model_validate(r) for r in doc.get("scores", [])]

    def flip_summary(self, eval_a: str, eval_b: str) -> list[FlipSummaryRow]:
        doc = self._compare(eval_a, eval_b, flips_limit=0, summary="true")
        return [FlipSummaryRow.model_validate(r) for r in doc.get("flip_summary", [])]

    def flips(self, eval_a: str, eval_b: str, dataset: str | None = None, limit: int = 100) -> list[FlipRow]:
        doc = self._compare(eval_a, eval_b, flips_limit=limit, dataset=dataset)
        return [FlipRow.model_validate(r) for r in doc.get("flips", [])]

    def gate(self, baseline: str, candidate: str, options: GateOptions) -> GateReport:
        """``GET /gate``: the report :func:`budeval.decisions.gate.evaluate_gate` makes in the service."""
        chosen = options.model_dump(mode="json", exclude={"power"})  # the route uses the default power
        doc = self._get("/gate", {"baseline": baseline, "candidate": candidate, **chosen})
        return GateReport.model_validate(doc)

    def series(self, series: str, dataset: str | None, alpha: float, correction: str, limit: int) -> SeriesReport:
        """``GET /series/{series}``: the report :func:`budeval.decisions.series.build_series` makes in the service."""
        params: dict[str, Any] = {"alpha": alpha, "correction": correction, "examples": limit}
        if dataset is not None:
            params["dataset"] = dataset
        return SeriesReport.model_validate(self._get(f"/series/{quote(series, safe='')}", params))

    def migrate(self) -> list[str]:
        """Nothing: the service migrated its store when it started."""
        return []

    def close(self) -> None:
        """Nothing to close (one HTTP request per query)."""
