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
from datetime import UTC, datetime
from typing import Any, NamedTuple

from budeval.decisions.gate import PairedDataset
from budeval.decisions.series import Checkpoint, KindRow, ListedExample, PointRow, SeriesRows
from budeval.storage.decision_queries import (
    BEST_OF_EXPERIMENT_SQL,
    CHECKPOINTS_SQL,
    EXAMPLE_TEXTS_SQL,
    LATEST_TEXTS_SQL,
    LATEST_WITH_LABEL_SQL,
    SET_MODELS_SQL,
    SETS_AGAINST_ROWS_SQL,
    listed_params,
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

    def predictions_expire(self) -> bool:
        raise NotImplementedError

    def _sets_hold_the_rows(self, eval_ids: list[str]) -> bool:
        """Whether the example sets of ``eval_ids`` still describe their prediction rows. Always, unless a TTL on
        ``predictions`` may have deleted rows (it does not delete their sets): then per evaluation the sets' examples
        are counted against the rows (:data:`SETS_AGAINST_ROWS_SQL`: judged, right and score-only examples; one pass
        over the rows' key range)."""
        if not self.predictions_expire():
            return True
        counts: dict[tuple[str, str], tuple[int, ...]] = {}
        for eval_id, side, *n in self._rows("example sets against rows", SETS_AGAINST_ROWS_SQL, {"ids": eval_ids}):
            counts[(str(eval_id), str(side))] = tuple(int(x) for x in n)
        none = (0, 0, 0)
        return all(counts.get((e, "sets"), none) == counts.get((e, "rows"), none) for e in eval_ids)

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
        if not rows or not all(row[5] for row in rows) or not self._sets_hold_the_rows([baseline, candidate]):
            return None
        out: list[PairedDataset] = []
        for dataset, unit_model, paired, only_b, only_c, _single, losses, gains, mean_b, mean_c in rows:
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
        rows = sorted(self._rows("series checkpoints", CHECKPOINTS_SQL, {"series": series}),
                      key=lambda r: (r[1] is None, r[1] or 0, r[3] is None, r[3] or _EPOCH, str(r[0])))
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
    ) -> tuple[list[KindRow], list[ListedExample], dict[str, int]]:
        """Per (dataset, kind) the examples over the series, the first ``limit`` examples of each kind but unstable
        with prompt and gold, and per dataset the flips (its kinds' flips summed)."""
        params = self._series_params(checkpoints, dataset) | {"limit": max(1, int(limit))}
        rows = self._rows("series kinds", series_kinds_sql(dataset is not None), params)
        kinds: dict[tuple[str, str], tuple[KindRow, int]] = {}
        listed: list[tuple[str, int, str, int]] = []
        for ds, index, kind, first_right, examples, flips in rows:
            kinds[(ds, kind)] = (KindRow(dataset=ds, kind=kind, examples=int(examples)), int(flips))
            if kind != "unstable" and limit > 0:  # the query lists at least one of each kind for the totals
                listed.append((ds, int(index), kind, int(first_right)))
        flips_of: dict[str, int] = {}
        for (ds, _), (_, flips) in kinds.items():
            flips_of[ds] = flips_of.get(ds, 0) + flips
        return [k for k, _ in kinds.values()], self._listed_examples(checkpoints, listed), flips_of

    def _listed_examples(
        self, checkpoints: list[Checkpoint], listed: list[tuple[str, int, str, int]],
        latest_of: dict[str, str] | None = None,
    ) -> list[ListedExample]:
        """(dataset, example_index, kind, first right position) as ListedExamples with prompt and gold from one IN
        lookup of only these examples in predictions: from each example's latest checkpoint that judged it
        (:data:`EXAMPLE_TEXTS_SQL`), or, given ``latest_of`` (dataset -> the eval id of its latest checkpoint, which
        judged every example of the dataset), from that one evaluation (:data:`LATEST_TEXTS_SQL`)."""
        texts: dict[tuple[str, int], tuple[str, str]] = {}
        if listed and latest_of is not None:
            params = {"ids": sorted(set(latest_of.values()))} | listed_params([(ds, i) for ds, i, _, _ in listed])
            for eval_id, ds, index, prompt, gold in self._rows("series example texts", LATEST_TEXTS_SQL, params):
                if latest_of.get(ds) == eval_id:
                    texts[(ds, int(index))] = (prompt or "", gold or "")
        elif listed:
            params = self._series_params(checkpoints, None) | listed_params([(ds, i) for ds, i, _, _ in listed])
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

    def series_rows(self, checkpoints: list[Checkpoint], dataset: str | None, limit: int) -> SeriesRows:
        """:meth:`series_points` and :meth:`series_kinds` together: from the example sets in one query when every
        dataset's checkpoints judged the same examples by one verdict each, else from the rows. No points: nothing."""
        if self.decisions_from_sets:
            from_sets = self._series_from_sets(checkpoints, dataset, limit)
            if from_sets is not None:
                return from_sets
        points = self.series_points(checkpoints, dataset)
        if not points:
            return SeriesRows([], [], [], {})
        return SeriesRows(points, *self.series_kinds(checkpoints, dataset, limit))

    def _series_from_sets(self, checkpoints: list[Checkpoint], dataset: str | None, limit: int) -> SeriesRows | None:
        """:meth:`series_rows` from the example sets (:func:`series_sets_sql`, one row per dataset and checkpoint);
        None when a dataset is not eligible there (or the sets may hold rows a TTL deleted): the rows decide then."""
        params = self._series_params(checkpoints, dataset) | {"limit": max(1, int(limit))}
        sql = series_sets_sql(dataset is not None)
        by_dataset: dict[str, list[_SetsRow]] = {}
        for row in sorted(self._rows("series example sets", sql, params), key=lambda r: (r[0], r[1])):
            by_dataset.setdefault(str(row[0]), []).append(_SetsRow(*row))
        for ds_rows in by_dataset.values():  # one verdict per example, the same examples at every checkpoint
            n = ds_rows[0].n
            if any(r.n != n or r.rows != n or r.judged_n != n for r in ds_rows):
                return None
        if not by_dataset or not self._sets_hold_the_rows([c.eval_id for c in checkpoints]):
            return None
        points: list[PointRow] = []
        kinds: list[KindRow] = []
        flips_of: dict[str, int] = {}
        listed: list[tuple[str, int, str, int]] = []
        for ds, ds_rows in by_dataset.items():
            first, latest, n = ds_rows[0], ds_rows[-1], int(ds_rows[0].n)
            for k, r in enumerate(ds_rows):
                points.append(PointRow(
                    dataset=ds, position=int(r.pos), examples=n, mean=r.nr / n,
                    var=r.nr * (n - r.nr) / (n * (n - 1)) if n > 1 else math.nan, replicas=1,
                    with_previous=n if k else 0, learned=int(r.learned), forgotten=int(r.forgotten),
                    losses_vs_first=int(r.gains - (r.nr - first.nr)), gains_vs_first=int(r.gains),
                ))
            n_easy = int(first.stays_n)
            n_learned = sum(int(r.stays_n) for r in ds_rows[1:])
            counts = {"easy": n_easy, "forgotten": int(latest.ever_n - latest.latest_n), "hard": n - int(latest.ever_n),
                      "learned": n_learned, "unstable": int(latest.latest_n) - n_easy - n_learned}
            # every example judged at every checkpoint: its flips are the transitions between consecutive checkpoints
            flips_of[ds] = sum(int(r.learned + r.forgotten) for r in ds_rows)
            kinds += [KindRow(dataset=ds, kind=k, examples=counts[k])  # type: ignore[arg-type]
                      for k in sorted(counts) if counts[k]]
            if limit <= 0:
                continue
            listed += [(ds, int(x), "easy", int(first.pos)) for x in sorted(first.stays_listed)]
            listed += sorted((ds, int(x), "forgotten", int(r.pos)) for r in ds_rows for x in r.forgotten_listed)
            listed += [(ds, int(x), "hard", 0) for x in sorted(first.hard_listed)]
            learned = [(ds, int(x), "learned", int(r.pos))  # the latest learned first
                       for r in reversed(ds_rows[1:]) for x in sorted(r.stays_listed)]
            listed += learned[: int(limit)]
        # each dataset's latest checkpoint judged all its examples: the prompts are read there only
        eval_at = {c.position: c.eval_id for c in checkpoints}
        latest_of = {ds: eval_at[int(ds_rows[-1].pos)] for ds, ds_rows in by_dataset.items()}
        return SeriesRows(points, kinds, self._listed_examples(checkpoints, listed, latest_of), flips_of)


class _SetsRow(NamedTuple):
    """A row of :func:`~budeval.storage.decision_queries.series_sets_sql` (its docstring defines the columns)."""

    dataset: str
    pos: int
    n: int
    rows: int
    judged_n: int
    nr: int
    learned: int
    forgotten: int
    gains: int
    ever_n: int
    latest_n: int
    stays_n: int
    stays_listed: list[int]
    forgotten_listed: list[int]
    hard_listed: list[int]


#: Stands for a missing creation time in :meth:`StoreDecisions.series_checkpoints`' sort key (never compared with
#: a real one: the key's "missing" flag comes first).
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _finite(value: Any) -> float:
    number = float(value) if value is not None else 0.0
    return number if number == number else 0.0  # avgIf over nothing is NaN
