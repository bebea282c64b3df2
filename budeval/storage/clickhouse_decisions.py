"""The store's reads for decisions (regression gate, checkpoint series): SQL in budeval/storage/decision_queries.py,
results as the models of budeval/decisions. A mixin of :class:`~budeval.storage.clickhouse.ClickHouseStore`, which
provides ``_rows`` (one locked query) and ``_prediction_models``."""

from __future__ import annotations

from typing import Any

from budeval.decisions.gate import PairedDataset
from budeval.decisions.series import Checkpoint, KindRow, ListedExample, PointRow
from budeval.storage.decision_queries import (
    BEST_OF_EXPERIMENT_SQL,
    CHECKPOINTS_SQL,
    LATEST_WITH_LABEL_SQL,
    paired_sql,
    series_kinds_sql,
    series_listed_sql,
    series_points_sql,
)
from budeval.storage.queries import pair_by_model


class StoreDecisions:
    """Decision reads over ``self._rows(what, sql, params)``."""

    def _rows(self, what: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _prediction_models(self, eval_id: str) -> set[str]:
        raise NotImplementedError

    def paired_examples(self, baseline: str, candidate: str) -> list[PairedDataset]:
        """Per dataset (and model, when both sides hold the same models: :func:`pair_by_model`) the paired
        aggregates of two evaluations' predictions, joined on (dataset, example_index); one row per dataset seen on
        either side."""
        by_model = pair_by_model(self._prediction_models(baseline), self._prediction_models(candidate))
        rows = self._rows("paired examples", paired_sql(by_model), {"b": baseline, "c": candidate})
        out: list[PairedDataset] = []
        for dataset, model_b, model_c, paired, only_b, only_c, single, losses, gains, mean_b, mean_c, hist in rows:
            values, counts = hist
            out.append(
                PairedDataset(
                    model_baseline=model_b,
                    model_candidate=model_c,
                    dataset=dataset,
                    paired=int(paired),
                    only_baseline=int(only_b),
                    only_candidate=int(only_c),
                    single_verdicts=bool(single) and int(paired) > 0,
                    losses=int(losses),
                    gains=int(gains),
                    mean_baseline=_finite(mean_b),
                    mean_candidate=_finite(mean_c),
                    diff_values=[float(v) for v in values],
                    diff_counts=[int(c) for c in counts],
                )
            )
        return out

    def resolve_baseline(self, rule: str, value: str, exclude: str) -> str | None:
        """The eval id a baseline rule names (``best`` + experiment, ``latest`` + ``label=value``), never
        ``exclude`` (the candidate); None when nothing matches."""
        if rule == "best":
            rows = self._rows("resolve baseline", BEST_OF_EXPERIMENT_SQL, {"value": value, "exclude": exclude})
        elif rule == "latest":
            label, _, wanted = value.partition("=")
            params = {"label": label, "value": wanted, "exclude": exclude}
            rows = self._rows("resolve baseline", LATEST_WITH_LABEL_SQL, params)
        else:
            raise ValueError(f"unknown baseline rule {rule!r}")
        return str(rows[0][0]) if rows else None


    # -- checkpoint series -------------------------------------------------------------------------------------------
    def series_checkpoints(self, series: str) -> list[Checkpoint]:
        """The finished evaluations of experiment ``series`` in training order (``step`` label, then creation)."""
        rows = self._rows("series checkpoints", CHECKPOINTS_SQL, {"series": series})
        out = []
        for position, (eval_id, step, _created) in enumerate(rows):
            text = str(step or "")
            out.append(Checkpoint(position=position, eval_id=str(eval_id), step=int(text) if text.isdigit() else None))
        return out

    @staticmethod
    def _series_params(checkpoints: list[Checkpoint], dataset: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "ids": [c.eval_id for c in checkpoints],
            "positions": [c.position for c in checkpoints],
        }
        if dataset is not None:
            params["dataset"] = dataset
        return params

    def series_points(self, checkpoints: list[Checkpoint], dataset: str | None) -> list[PointRow]:
        """Per (dataset, checkpoint): the curve's aggregates, transitions and McNemar counts against the first."""
        rows = self._rows(
            "series points", series_points_sql(dataset is not None), self._series_params(checkpoints, dataset)
        )
        names = ("dataset", "position", "examples", "mean", "var", "replicas", "with_previous", "learned",
                 "forgotten", "losses_vs_first", "gains_vs_first")
        return [PointRow.model_validate(dict(zip(names, r, strict=True))) for r in rows]

    def series_kinds(self, checkpoints: list[Checkpoint], dataset: str | None) -> list[KindRow]:
        """Per (dataset, kind): examples of that kind over the series and their flips."""
        rows = self._rows(
            "series kinds", series_kinds_sql(dataset is not None), self._series_params(checkpoints, dataset)
        )
        return [KindRow(dataset=d, kind=k, examples=int(n), flips=int(f)) for d, k, n, f in rows]

    def series_examples(self, checkpoints: list[Checkpoint], dataset: str | None, limit: int) -> list[ListedExample]:
        """The first ``limit`` examples of each (dataset, kind) but unstable, with prompt and gold."""
        params = self._series_params(checkpoints, dataset) | {"limit": max(0, int(limit))}
        rows = self._rows("series examples", series_listed_sql(dataset is not None), params)
        by_position = {c.position: c.eval_id for c in checkpoints}
        out = []
        for ds, index, kind, first_right, _last, prompt, gold in rows:
            ever = kind != "hard"
            out.append(
                ListedExample(
                    dataset=ds, example_index=int(index), kind=kind, prompt=prompt or "", gold=gold or "",
                    first_right_position=int(first_right) if ever else None,
                    first_right_eval_id=by_position.get(int(first_right)) if ever else None,
                )
            )
        return out


def _finite(value: Any) -> float:
    number = float(value) if value is not None else 0.0
    return number if number == number else 0.0  # avgIf over nothing is NaN
