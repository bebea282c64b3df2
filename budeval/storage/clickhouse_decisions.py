"""The store's reads for decisions (regression gate, checkpoint series): SQL in budeval/storage/decision_queries.py,
results as the models of budeval/decisions. A mixin of :class:`~budeval.storage.clickhouse.ClickHouseStore`, which
provides ``_rows`` (one locked query) and ``_prediction_models``."""

from __future__ import annotations

from typing import Any

from budeval.decisions.gate import PairedDataset
from budeval.storage.decision_queries import BEST_OF_EXPERIMENT_SQL, LATEST_WITH_LABEL_SQL, paired_sql
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


def _finite(value: Any) -> float:
    number = float(value) if value is not None else 0.0
    return number if number == number else 0.0  # avgIf over nothing is NaN
