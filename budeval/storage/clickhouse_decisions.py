"""The store's reads for decisions (regression gate, checkpoint series): SQL in budeval/storage/decision_queries.py,
results as the models of budeval/decisions. A mixin of :class:`~budeval.storage.clickhouse.ClickHouseStore`, which
provides ``_rows`` (one locked query) and ``_prediction_models``.

Two ways to the same numbers: from the example sets (``example_sets``, migration 7: a few bitmaps per evaluation and
dataset) when every example is one verdict per evaluation -- and for the series, every checkpoint judged the same
examples --, else from the prediction rows (replicas, numeric scores, differing example sets). The set queries check
their own condition, so a decision never reads the wrong way; ``decisions_from_sets = False`` forces the rows (the
tests compare both ways on the same data)."""

from __future__ import annotations

import math
from typing import Any

from budeval.decisions.gate import PairedDataset
from budeval.decisions.series import Checkpoint, KindRow, ListedExample, PointRow
from budeval.storage.decision_queries import (
    BEST_OF_EXPERIMENT_SQL,
    CHECKPOINTS_SQL,
    EXAMPLE_TEXTS_SQL,
    LATEST_WITH_LABEL_SQL,
    SET_MODELS_SQL,
    SETS_AGAINST_ROWS_SQL,
    paired_sets_sql,
    paired_sql,
    series_kinds_sql,
    series_points_sql,
    series_sets_sql,
)
from budeval.storage.queries import pair_by_model


class StoreDecisions:
    """Decision reads over ``self._rows(what, sql, params)``."""

    #: Read the example sets where they decide exactly (see the module docstring); False: always the rows.
    decisions_from_sets: bool = True

    def _rows(self, what: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _prediction_models(self, eval_id: str) -> set[str]:
        raise NotImplementedError

    def predictions_expire(self, engine: str | None = None) -> bool:
        raise NotImplementedError

    def _sets_hold_the_rows(self, eval_ids: list[str], engine: str) -> bool:
        """Whether the example sets of ``eval_ids`` still describe their prediction rows. Always, unless a TTL on
        ``predictions`` (``engine``: its ``engine_full``) may have deleted rows (it does not delete their sets): then
        per evaluation the sets' examples are counted against the rows (:data:`SETS_AGAINST_ROWS_SQL`, one pass over
        the rows' key range)."""
        if not self.predictions_expire(str(engine or "")):
            return True
        counts: dict[tuple[str, str], int] = {}
        for eval_id, side, n in self._rows("example sets against rows", SETS_AGAINST_ROWS_SQL, {"ids": eval_ids}):
            counts[(str(eval_id), str(side))] = int(n)
        return all(counts.get((e, "sets"), 0) == counts.get((e, "rows"), 0) for e in eval_ids)

    def paired_examples(self, baseline: str, candidate: str) -> list[PairedDataset]:
        """Per dataset (and model, when both sides hold the same models: :func:`pair_by_model`) the paired
        aggregates of two evaluations' predictions, joined on (dataset, example_index); one row per dataset seen on
        either side."""
        if self.decisions_from_sets:
            from_sets = self._paired_from_sets(baseline, candidate)
            if from_sets is not None:
                return from_sets
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

    def _paired_from_sets(self, baseline: str, candidate: str) -> list[PairedDataset] | None:
        """:meth:`paired_examples` from the example sets; None when a side is not one verdict per example (or has no
        rows): the caller then pairs the rows."""
        models = {str(e): {str(m) for m in ms} for e, ms in self._rows("example set models", SET_MODELS_SQL,
                                                                       {"b": baseline, "c": candidate})}
        models_b, models_c = models.get(baseline), models.get(candidate)
        if not models_b or not models_c:
            return None
        by_model = pair_by_model(models_b, models_c)
        rows = self._rows("paired example sets", paired_sets_sql(by_model), {"b": baseline, "c": candidate})
        if not rows or not all(row[5] for row in rows) or not self._sets_hold_the_rows([baseline, candidate],
                                                                                      rows[0][-1]):
            return None
        out: list[PairedDataset] = []
        for dataset, unit_model, paired, only_b, only_c, _single, losses, gains, mean_b, mean_c, _engine in rows:
            ties = int(paired) - int(losses) - int(gains)
            histogram = [(v, n) for v, n in ((-100.0, int(losses)), (0.0, ties), (100.0, int(gains))) if n]
            out.append(
                PairedDataset(
                    model_baseline=unit_model if by_model else next(iter(models_b)),
                    model_candidate=unit_model if by_model else next(iter(models_c)),
                    dataset=dataset,
                    paired=int(paired),
                    only_baseline=int(only_b),
                    only_candidate=int(only_c),
                    single_verdicts=int(paired) > 0,
                    losses=int(losses),
                    gains=int(gains),
                    mean_baseline=_finite(mean_b),
                    mean_candidate=_finite(mean_c),
                    diff_values=[v for v, _ in histogram],
                    diff_counts=[n for _, n in histogram],
                    value_range=100.0,
                    mixed=0,
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
        return list(kinds.values()), self._listed_examples(checkpoints, listed)

    def _listed_examples(
        self, checkpoints: list[Checkpoint], listed: list[tuple[str, int, str, int]],
        holding: list[Checkpoint] | None = None,
    ) -> list[ListedExample]:
        """(dataset, example_index, kind, first right position) as ListedExamples with prompt and gold: one IN lookup
        of only these examples in predictions, in the checkpoints ``holding`` them (default: all)."""
        texts: dict[tuple[str, int], tuple[str, str]] = {}
        if listed:
            pairs = [(ds, index) for ds, index, _, _ in listed]
            params = self._series_params(holding or checkpoints, None) | {"pairs": pairs}
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
        return examples

    def series_rows(
        self, checkpoints: list[Checkpoint], dataset: str | None, limit: int
    ) -> tuple[list[PointRow], list[KindRow], list[ListedExample]]:
        """:meth:`series_points` and :meth:`series_kinds` together: from the example sets in one query when every
        dataset's checkpoints judged the same examples by one verdict each, else from the rows. No points: nothing."""
        if self.decisions_from_sets:
            from_sets = self._series_from_sets(checkpoints, dataset, limit)
            if from_sets is not None:
                return from_sets
        points = self.series_points(checkpoints, dataset)
        if not points:
            return [], [], []
        kinds, listed = self.series_kinds(checkpoints, dataset, limit)
        return points, kinds, listed

    def _series_from_sets(
        self, checkpoints: list[Checkpoint], dataset: str | None, limit: int
    ) -> tuple[list[PointRow], list[KindRow], list[ListedExample]] | None:
        params = self._series_params(checkpoints, dataset) | {"limit": max(1, int(limit))}
        rows = self._rows("series example sets", series_sets_sql(dataset is not None), params)
        if not rows or not all(row[1] for row in rows):
            return None
        if not self._sets_hold_the_rows([c.eval_id for c in checkpoints], rows[0][-1]):
            return None
        points: list[PointRow] = []
        kinds: list[KindRow] = []
        listed: list[tuple[str, int, str, int]] = []
        for row in rows:
            (ds, _eligible, curve, examples, forgotten_flips, easy, forgotten_listed, hard, learned_by_position,
             right_at, _engine) = row
            ps = [int(c[0]) for c in curve]
            all_flips = 0
            right_first = curve[0][2]  # right ones at the first checkpoint
            for i, (pos, n, nr, learned, forgotten, gains) in enumerate(curve):
                all_flips += learned + forgotten
                points.append(PointRow(
                    dataset=ds, position=int(pos), examples=int(n), mean=nr / n,
                    var=nr * (n - nr) / (n * (n - 1)) if n > 1 else math.nan, replicas=1,
                    with_previous=int(n) if i else 0, learned=int(learned), forgotten=int(forgotten),
                    losses_vs_first=int(gains - (nr - right_first)), gains_vs_first=int(gains),
                ))
            n_easy, n_forgotten, n_hard, n_learned, n_unstable = (int(x) for x in examples)
            flips = {"easy": 0, "forgotten": int(forgotten_flips), "hard": 0, "learned": n_learned,
                     "unstable": all_flips - int(forgotten_flips) - n_learned}
            counts = {"easy": n_easy, "forgotten": n_forgotten, "hard": n_hard, "learned": n_learned,
                      "unstable": n_unstable}
            kinds += [KindRow(dataset=ds, kind=k, examples=counts[k], flips=flips[k])  # type: ignore[arg-type]
                      for k in sorted(counts) if counts[k]]
            if limit <= 0:
                continue
            first_right = {}
            for j, index in enumerate(forgotten_listed):  # the first checkpoint where right
                first_right[int(index)] = next((int(ps[k]) for k, at in enumerate(right_at) if at[j]), 0)
            listed += [(ds, int(x), "easy", int(ps[0])) for x in easy]
            listed += [(ds, int(x), "forgotten", first_right[int(x)]) for x in forgotten_listed]
            listed += [(ds, int(x), "hard", 0) for x in hard]
            by_learning = [(int(ps[k]), int(x)) for k in reversed(range(len(ps))) for x in learned_by_position[k]]
            listed += [(ds, x, "learned", pos) for pos, x in by_learning[: max(1, int(limit))]]
        latest = {int(row[2][-1][0]) for row in rows}  # each dataset's latest checkpoint judged all its examples
        holding = [c for c in checkpoints if c.position in latest]
        return points, kinds, self._listed_examples(checkpoints, listed, holding)


def _finite(value: Any) -> float:
    number = float(value) if value is not None else 0.0
    return number if number == number else 0.0  # avgIf over nothing is NaN
