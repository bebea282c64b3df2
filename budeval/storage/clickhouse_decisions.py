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
    EXAMPLE_TEXTS_SQL,
    LATEST_WITH_LABEL_SQL,
    paired_sql,
    series_kinds_sql,
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
        models_b, models_c = self._prediction_models(baseline), self._prediction_models(candidate)
        by_model = pair_by_model(models_b, models_c)
        rows = self._rows("paired examples", paired_sql(by_model), {"b": baseline, "c": candidate})
        out: list[PairedDataset] = []
        for row in rows:
            dataset, unit_model, paired, only_b, only_c, single, losses, gains, mean_b, mean_c, hist, span, mixed = row
            values, counts = hist
            model_b = unit_model if by_model else next(iter(models_b))
            model_c = unit_model if by_model else next(iter(models_c))
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
                    value_range=_finite(span),
                    mixed=int(mixed),
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
        """The finished evaluations of series ``series`` in training order (:data:`CHECKPOINTS_SQL`: the checkpoint
        columns, else ``experiment_id`` and the ``step`` label; then creation)."""
        rows = self._rows("series checkpoints", CHECKPOINTS_SQL, {"series": series})
        return [
            Checkpoint(position=position, eval_id=str(eval_id), step=None if step is None else int(step),
                       tokens_seen=None if tokens is None else int(tokens))
            for position, (eval_id, step, tokens, _created) in enumerate(rows)
        ]

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

    def series_kinds(
        self, checkpoints: list[Checkpoint], dataset: str | None, limit: int
    ) -> tuple[list[KindRow], list[ListedExample]]:
        """Per (dataset, kind) the examples and flips over the series, and the first ``limit`` examples of each kind
        but unstable, with prompt and gold."""
        params = self._series_params(checkpoints, dataset) | {"limit": max(1, int(limit))}
        rows = self._rows("series kinds", series_kinds_sql(dataset is not None), params)
        kinds: dict[tuple[str, str], KindRow] = {}
        listed: list[tuple[str, int, str, int]] = []
        for ds, index, kind, first_right, examples, flips in rows:
            kinds[(ds, kind)] = KindRow(dataset=ds, kind=kind, examples=int(examples), flips=int(flips))
            if kind != "unstable" and limit > 0:  # the query lists at least one of each kind for the totals
                listed.append((ds, int(index), kind, int(first_right)))
        texts: dict[tuple[str, int], tuple[str, str]] = {}
        if listed:
            pairs = [(ds, index) for ds, index, _, _ in listed]
            params = {"ids": [c.eval_id for c in checkpoints], "pairs": pairs}
            for ds, index, prompt, gold in self._rows("series example texts", EXAMPLE_TEXTS_SQL, params):
                texts[(ds, int(index))] = (prompt or "", gold or "")
        by_position = {c.position: c.eval_id for c in checkpoints}
        examples = []
        for ds, index, kind, first_right in listed:
            ever = kind != "hard"
            prompt, gold = texts.get((ds, index), ("", ""))
            examples.append(
                ListedExample(
                    dataset=ds, example_index=index, kind=kind, prompt=prompt, gold=gold,  # type: ignore[arg-type]
                    first_right_position=first_right if ever else None,
                    first_right_eval_id=by_position.get(first_right) if ever else None,
                )
            )
        return list(kinds.values()), examples


def _finite(value: Any) -> float:
    number = float(value) if value is not None else 0.0
    return number if number == number else 0.0  # avgIf over nothing is NaN
