"""SQL of the decisions (regression gate, checkpoint series): per-example pairing and aggregation run in ClickHouse,
so only a handful of numbers per dataset (and a histogram of per-example differences) leave the store.

docs/decisions.md shows the same queries for analysts to run by hand. No ``;`` anywhere in them, comments included:
clickhouse-connect then runs its Python tokenizer over the whole bound statement to strip trailing semicolons (~2 ms
for the series' set query with 50 eval ids; tests/decisions/test_series.py checks).
"""

from __future__ import annotations

from typing import Any

from budeval.storage.queries import PROMPT_CHARS

#: An example's value on one side: its verdict as 0 / 100 (points of accuracy), else the evaluator's numeric score;
#: rows with neither (a NaN or infinite score counts as none) are not compared.
VALUE_SQL = "if(correct IS NULL, score, toFloat64(assumeNotNull(correct)) * 100)"
COMPARED_SQL = "(correct IS NOT NULL OR isFinite(ifNull(score, nan)))"


def paired_sql(by_model: bool) -> str:
    """Per (model pairing, dataset): paired / one-sided example counts, McNemar's discordant counts, the means and
    the histogram of per-example differences (candidate ``c`` - baseline ``b``, rounded to 1e-9 so that float noise
    does not split equal differences). Parameters: ``b`` (baseline eval id), ``c`` (candidate eval id).

    One scan of both evaluations' rows grouped by example (no join: both sides are aggregated side by side with
    ``-If`` combinators); an example's value per side is the mean over its replicas, ``k`` their count.
    ``value_range``: 100 when every paired value is a verdict, else the observed range of the paired values.
    ``mixed``: paired examples judged by a verdict on one side (or replica) and only by a numeric score on another,
    plus, when the unit has examples judged by verdicts on both sides, its examples scored only numerically on both
    (different units -- a verdict is 0 or 100, a score its own scale -- would be averaged: the gate refuses them).
    ``unit_model``: the model when paired model by model, else '' (each side then holds one model, known apart).
    """
    unit_model = "model" if by_model else "''"
    inner = f"""
        SELECT {unit_model} AS unit_model, dataset, example_index,
               countIf(eval_id = %(b)s) AS k_b, countIf(eval_id = %(c)s) AS k_c,
               avgIf(v, eval_id = %(b)s) AS m_b, avgIf(v, eval_id = %(c)s) AS m_c,
               minIf(is_verdict, eval_id = %(b)s) AS verdicts_b, minIf(is_verdict, eval_id = %(c)s) AS verdicts_c,
               maxIf(is_verdict, eval_id = %(b)s) AS any_verdict_b, maxIf(is_verdict, eval_id = %(c)s) AS any_verdict_c
        FROM (SELECT eval_id, model, dataset, example_index, assumeNotNull({VALUE_SQL}) AS v,
                     correct IS NOT NULL AS is_verdict
              FROM predictions FINAL
              WHERE eval_id IN (%(b)s, %(c)s) AND {COMPARED_SQL})
        GROUP BY unit_model, dataset, example_index
    """
    return _paired_aggregate("dataset, unit_model", inner) + "\n    ORDER BY dataset, unit_model\n"


def _paired_aggregate(keys: str, inner: str) -> str:
    """The per-unit aggregate of :func:`paired_sql` over ``inner`` (one row per example with ``k_b``/``k_c``,
    ``m_b``/``m_c``, ``verdicts_*`` and ``any_verdict_*``), grouped by ``keys`` (selected first)."""
    both = "k_b > 0 AND k_c > 0"
    return f"""
    SELECT {keys},
           countIf({both}) AS paired,
           countIf(k_b > 0 AND k_c = 0) AS only_b,
           countIf(k_b = 0 AND k_c > 0) AS only_c,
           countIf({both} AND NOT (k_b = 1 AND k_c = 1 AND verdicts_b AND verdicts_c)) = 0 AS single_verdicts,
           countIf({both} AND m_b = 100 AND m_c = 0) AS losses,
           countIf({both} AND m_b = 0 AND m_c = 100) AS gains,
           avgIf(m_b, {both}) AS mean_b, avgIf(m_c, {both}) AS mean_c,
           sumMapIf([round(m_c - m_b, 9)], [toUInt64(1)], {both}) AS histogram,
           if(countIf({both} AND NOT (verdicts_b AND verdicts_c)) = 0, 100,
              greatest(maxIf(m_b, {both}), maxIf(m_c, {both})) - least(minIf(m_b, {both}), minIf(m_c, {both})))
               AS value_range,
           countIf({both} AND greatest(any_verdict_b, any_verdict_c) AND NOT (verdicts_b AND verdicts_c))
               + if(countIf({both} AND verdicts_b AND verdicts_c) > 0,
                    countIf({both} AND NOT any_verdict_b AND NOT any_verdict_c), 0) AS mixed
    FROM ({inner})
    GROUP BY {keys}"""


def paired_cells_sql() -> str:
    """:func:`paired_sql`'s aggregates for many pairs of leaderboard cells at once (the significance tiers of the web
    UI's leaderboard). ``sides``: one (eval_id, model, dataset, pair, is_baseline) tuple per cell of each pair -- pair
    ``i`` is a baseline cell against a candidate cell on one dataset; ``cells``: every (eval_id, model, dataset) named,
    so that the sorting key narrows the scan. The cells' rows are joined to their pairs (a hash join on the small
    list), then aggregated per pair and example. One row per pair that has rows."""
    inner = f"""
        SELECT pair, example_index,
               countIf(base) AS k_b, countIf(NOT base) AS k_c,
               avgIf(v, base) AS m_b, avgIf(v, NOT base) AS m_c,
               minIf(is_verdict, base) AS verdicts_b, minIf(is_verdict, NOT base) AS verdicts_c,
               maxIf(is_verdict, base) AS any_verdict_b, maxIf(is_verdict, NOT base) AS any_verdict_c
        FROM (SELECT eval_id, model, dataset, example_index, assumeNotNull({VALUE_SQL}) AS v,
                     correct IS NOT NULL AS is_verdict
              FROM predictions FINAL
              WHERE (eval_id, model, dataset) IN %(cells)s AND {COMPARED_SQL}) AS p
        INNER JOIN (SELECT s.1 AS eval_id, s.2 AS model, s.3 AS dataset, s.4 AS pair, s.5 AS base
                    FROM (SELECT arrayJoin(%(sides)s) AS s)) AS m
            ON p.eval_id = m.eval_id AND p.model = m.model AND p.dataset = m.dataset
        GROUP BY pair, example_index
    """
    return _paired_aggregate("pair", inner) + "\n    ORDER BY pair\n"


#: ``best:<experiment>``: the evaluation of an experiment (``experiment_id``) or of a checkpoint series
#: (``checkpoint_series``) with the highest mean of its scores.
BEST_OF_EXPERIMENT_SQL = """
    SELECT eval_id FROM scores_current
    WHERE eval_id IN (SELECT eval_id FROM evaluations FINAL
                      WHERE experiment_id = %(value)s OR checkpoint_series = %(value)s)
      AND score IS NOT NULL AND eval_id != %(exclude)s
      AND eval_status IN ('completed', 'partial', 'reused')
    GROUP BY eval_id
    ORDER BY avg(score) DESC, eval_id ASC
    LIMIT 1
"""

#: ``latest:<label>=<value>``: the newest evaluation carrying that label value (``mapContains``: a missing key reads
#: as '', which ``latest:<label>=`` must not match).
LATEST_WITH_LABEL_SQL = """
    SELECT eval_id FROM evaluations FINAL
    WHERE mapContains(labels, %(label)s) AND labels[%(label)s] = %(value)s AND eval_id != %(exclude)s
      AND status IN ('completed', 'partial', 'reused')
    ORDER BY created_at DESC NULLS LAST, eval_id DESC
    LIMIT 1
"""


# -- checkpoint series ------------------------------------------------------------------------------------------------
#: The checkpoints of series ``series`` (the caller orders them: ``ClickHouseStore.series_checkpoints``). An
#: evaluation belongs to it by its request's ``checkpoint`` block (columns ``checkpoint_series``, ``checkpoint_step``,
#: ``checkpoint_tokens``; migration 6); an evaluation without one (stored before migration 6, or sent without the
#: block) belongs by ``experiment_id`` with its ``step`` label as the step (when an integer: ``toUInt64OrNull``).
#: Columns: eval id, step, tokens seen, creation time. Training order: by step, those without one after every
#: numbered one, then by creation time (none last), then eval id -- sorted by the caller, not by an ``ORDER BY``
#: (~1.5 ms of the series' analysis).
CHECKPOINTS_SQL = """
    SELECT eval_id, if(checkpoint_series != '', checkpoint_step, toUInt64OrNull(labels['step'])),
           checkpoint_tokens, created_at
    FROM evaluations FINAL
    WHERE (checkpoint_series = %(series)s OR (checkpoint_series = '' AND experiment_id = %(series)s))
      AND status IN ('completed', 'partial', 'reused')
"""


def _series_examples(with_dataset: bool) -> str:
    # Per example: its (position, mean verdict over replicas) at every checkpoint that judged it, in position order.
    # Parameters: ids (eval ids in training order), positions (0..n-1), and dataset when filtered.
    dataset_filter = "AND dataset = %(dataset)s" if with_dataset else ""
    return f"""
    per AS (
        SELECT dataset, example_index, transform(eval_id, %(ids)s, %(positions)s, 0) AS pos,
               avg(toFloat64(assumeNotNull(correct))) AS m, count() AS k
        FROM predictions FINAL
        WHERE eval_id IN %(ids)s AND correct IS NOT NULL {dataset_filter}
        GROUP BY dataset, example_index, eval_id
    ),
    ex AS (
        SELECT dataset, example_index,
               arraySort(x -> x.1, groupArray((pos, m, k))) AS seq,
               arrayMap(x -> x.1, seq) AS ps,
               arrayMap(x -> x.2, seq) AS ms,
               arrayMap(x -> x.3, seq) AS ks,
               arrayMap(x -> x >= 0.5, ms) AS oks
        FROM per
        GROUP BY dataset, example_index
    )
    """


def series_points_sql(with_dataset: bool) -> str:
    """Per (dataset, checkpoint position): examples, mean and variance of the per-example verdicts (0-1; with
    replicas each example's mean), the most replicas of an example, transitions from the example's previous
    checkpoint (learned: wrong -> right, forgotten: right -> wrong; an example is right when at least half its
    replicas are) and McNemar's counts against the example's first checkpoint."""
    return f"""
    WITH {_series_examples(with_dataset)}
    SELECT dataset, ps[i] AS pos, count() AS examples, avg(ms[i]) AS mean, varSamp(ms[i]) AS var, max(ks[i]) AS k,
           countIf(i > 1) AS with_previous,
           countIf(i > 1 AND NOT oks[i - 1] AND oks[i]) AS learned,
           countIf(i > 1 AND oks[i - 1] AND NOT oks[i]) AS forgotten,
           countIf(oks[1] AND NOT oks[i]) AS losses_vs_first,
           countIf(NOT oks[1] AND oks[i]) AS gains_vs_first
    FROM ex
    ARRAY JOIN arrayEnumerate(ps) AS i
    GROUP BY dataset, pos
    ORDER BY dataset, pos
    """


#: An example's kind over the series: easy (always right), hard (never right), forgotten (right before, wrong at its
#: latest checkpoint), learned (wrong first, right from its first right on), unstable (right at the latest, but wrong
#: again after a first right).
_KIND = """
    multiIf(arrayAll(x -> x, oks), 'easy',
            NOT arrayExists(x -> x, oks), 'hard',
            NOT oks[-1], 'forgotten',
            arrayAll(x -> x, arraySlice(oks, arrayFirstIndex(x -> x, oks))), 'learned',
            'unstable')
"""


def series_kinds_sql(with_dataset: bool) -> str:
    """Per (dataset, kind): the first ``limit`` examples (learned ones latest-learned first) with the position where
    each was first right (0 when never), and on every row the kind's totals over the series: examples and flips
    (changes between consecutive checkpoints). One pass: the totals are window aggregates computed before
    ``LIMIT BY``."""
    return f"""
    WITH {_series_examples(with_dataset)}
    SELECT dataset, example_index, kind, first_right,
           count() OVER w AS kind_examples, sum(flips) OVER w AS kind_flips
    FROM (
        SELECT dataset, example_index, {_KIND} AS kind,
               if(arrayExists(x -> x, oks), ps[arrayFirstIndex(x -> x, oks)], 0) AS first_right,
               length(arrayFilter((a, b) -> a != b, arrayPopFront(oks), arrayPopBack(oks))) AS flips
        FROM ex
    )
    WINDOW w AS (PARTITION BY dataset, kind)
    ORDER BY dataset, kind, if(kind = 'learned', first_right, 0) DESC, example_index
    LIMIT %(limit)s BY dataset, kind
    """


#: The rows of listed examples: parameters ``indices`` and ``keys`` from :func:`listed_params`. Not ``(dataset,
#: example_index) IN [(...), ...]``: a literal of tuples is analysed element by element (~3 ms for 80), an array of
#: plain strings or numbers is one literal; ``example_index IN`` lets the primary key skip the other granules.
_LISTED = "example_index IN %(indices)s AND has(%(keys)s, concat(dataset, ':', toString(example_index)))"


def listed_params(pairs: list[tuple[str, int]]) -> dict[str, list[Any]]:
    """``indices`` and ``keys`` of the (dataset, example_index) ``pairs`` for :data:`EXAMPLE_TEXTS_SQL` /
    :data:`LATEST_TEXTS_SQL`: a key is ``dataset:example_index`` (one-to-one: the index is the digits after the
    last ``:``)."""
    return {"indices": sorted({int(i) for _, i in pairs}), "keys": sorted({f"{d}:{int(i)}" for d, i in pairs})}


#: Prompt and gold of listed examples (:func:`listed_params`) from the latest checkpoint of ``ids`` (positions
#: ``positions``) that judged the example.
EXAMPLE_TEXTS_SQL = f"""
    SELECT dataset, example_index, argMax(leftUTF8(prompt, {PROMPT_CHARS}), pos), argMax(gold, pos)
    FROM (SELECT dataset, example_index, prompt, gold, transform(eval_id, %(ids)s, %(positions)s, 0) AS pos
          FROM predictions
          WHERE eval_id IN %(ids)s AND {_LISTED} AND correct IS NOT NULL)
    GROUP BY dataset, example_index
"""

#: :data:`EXAMPLE_TEXTS_SQL` when one evaluation per dataset judged all of its examples (the series from the example
#: sets: each dataset's latest checkpoint): the listed examples' rows in the evaluations ``ids`` with their eval id,
#: the caller keeping each dataset's own (no ranking in SQL: ~2 ms less analysis).
LATEST_TEXTS_SQL = f"""
    SELECT eval_id, dataset, example_index, leftUTF8(prompt, {PROMPT_CHARS}), gold
    FROM predictions
    WHERE eval_id IN %(ids)s AND {_LISTED} AND correct IS NOT NULL
"""


def series_matrix_sql(with_dataset: bool) -> str:
    """The examples x checkpoints matrix of a series (the web UI's heatmap): per example its checkpoint positions and
    mean verdicts there (0-1), a page of ``limit`` examples from ``offset`` in (dataset, example_index) order, and on
    every row the number of examples in all (a window count before ``LIMIT``)."""
    return f"""
    WITH {_series_examples(with_dataset)}
    SELECT dataset, example_index, ps, ms, count() OVER () AS total
    FROM ex
    ORDER BY dataset, example_index
    LIMIT %(limit)s OFFSET %(offset)s
    """


# -- the same from the example sets (migration 7) ---------------------------------------------------------------------
# ``example_sets`` holds per (eval, dataset, model, run, replica) three bitmaps of example indices: ``judged`` (a
# verdict), ``judged_right`` (verdict true), ``scored_only`` (no verdict, a finite score). When every example has one
# row per evaluation (no replicas, no second run or model holding it) and only verdicts, the decisions above are set
# operations on a few bitmaps per dataset; the store checks that in the same query (``single`` / ``eligible``) and
# otherwise runs the row queries above. docs/decisions.md "Example sets".

#: The models of two evaluations (``b``, ``c``): the same set as ``SELECT DISTINCT model FROM predictions``, since every
#: prediction row's group has a row here.
SET_MODELS_SQL = """
    SELECT eval_id, groupUniqArray(model) FROM example_sets FINAL WHERE eval_id IN (%(b)s, %(c)s) GROUP BY eval_id
"""


#: Per eval id of ``ids``: what the example sets hold (``sets``) beside what the prediction rows hold (``rows``), as
#: three counts -- judged examples, right ones, examples with only a finite score. Equal while no row or verdict
#: left the table without the store's deletes; a predictions TTL deletes rows (a column TTL empties a column) but not
#: their sets, so with a TTL the decisions read the sets only when all three agree. Counted apart because a verdict
#: emptied by a column TTL beside a finite score moves the example from judged to score-only: the total stays equal.
#: ``predictions`` without FINAL: rows not yet merged only make ``rows`` larger (the rows are read then: exact).
SETS_AGAINST_ROWS_SQL = """
    SELECT eval_id, 'sets', sum(bitmapCardinality(judged)), sum(bitmapCardinality(judged_right)),
           sum(bitmapCardinality(scored_only))
    FROM example_sets FINAL WHERE eval_id IN %(ids)s GROUP BY eval_id
    UNION ALL
    SELECT eval_id, 'rows', countIf(correct IS NOT NULL), countIf(correct = true),
           countIf(correct IS NULL AND isFinite(ifNull(score, nan)))
    FROM predictions WHERE eval_id IN %(ids)s GROUP BY eval_id
"""


#: The ``predictions`` table's definition, its TTL clause included (read by ``PredictionsTtl``): ``SHOW CREATE`` costs
#: about what ``SELECT 1`` does, where ``system.tables.engine_full`` (alone or as a column of a decision's query)
#: costs ~2 ms of query analysis and a system table read.
PREDICTIONS_CREATE_SQL = "SHOW CREATE TABLE predictions"


def paired_sets_sql(by_model: bool) -> str:
    """:func:`paired_sql`'s columns from the example sets, for evaluations judged by one verdict per example.
    ``single``: true when that holds on both sides (every compared row is a verdict and no example has two rows: the
    groups' cardinalities add up to their union's); the other columns are exact only then. Per side: ``p`` the
    compared examples, ``r`` the right ones; losses = right in the baseline and judged wrong in the candidate."""
    unit_model = "model" if by_model else "''"
    return f"""
    SELECT dataset, unit_model,
           bitmapAndCardinality(j_b, j_c) AS paired,
           bitmapCardinality(bitmapOr(j_b, s_b)) - bitmapAndCardinality(bitmapOr(j_b, s_b), bitmapOr(j_c, s_c))
               AS only_b,
           bitmapCardinality(bitmapOr(j_c, s_c)) - bitmapAndCardinality(bitmapOr(j_b, s_b), bitmapOr(j_c, s_c))
               AS only_c,
           rows_b = bitmapCardinality(j_b) AND rows_c = bitmapCardinality(j_c)
               AND bitmapCardinality(s_b) = 0 AND bitmapCardinality(s_c) = 0 AS single,
           bitmapAndCardinality(r_b, j_c) - bitmapAndCardinality(r_b, r_c) AS losses,
           bitmapAndCardinality(r_c, j_b) - bitmapAndCardinality(r_b, r_c) AS gains,
           100 * bitmapAndCardinality(r_b, j_c) / paired AS mean_b,
           100 * bitmapAndCardinality(r_c, j_b) / paired AS mean_c
    FROM (
        SELECT dataset, {unit_model} AS unit_model,
               groupBitmapOrStateIf(judged, eval_id = %(b)s) AS j_b,
               groupBitmapOrStateIf(judged, eval_id = %(c)s) AS j_c,
               groupBitmapOrStateIf(judged_right, eval_id = %(b)s) AS r_b,
               groupBitmapOrStateIf(judged_right, eval_id = %(c)s) AS r_c,
               groupBitmapOrStateIf(scored_only, eval_id = %(b)s) AS s_b,
               groupBitmapOrStateIf(scored_only, eval_id = %(c)s) AS s_c,
               sumIf(bitmapCardinality(judged) + bitmapCardinality(scored_only), eval_id = %(b)s) AS rows_b,
               sumIf(bitmapCardinality(judged) + bitmapCardinality(scored_only), eval_id = %(c)s) AS rows_c
        FROM example_sets FINAL
        WHERE eval_id IN (%(b)s, %(c)s)
        GROUP BY dataset, unit_model
        HAVING rows_b + rows_c > 0
    )
    ORDER BY dataset, unit_model
    """


def series_sets_sql(with_dataset: bool) -> str:
    """The series from the example sets: one row per (dataset, checkpoint position), in no order (the caller sorts:
    a final ``ORDER BY`` is one more sort of the bitmaps, ~3 ms).

    Columns: ``dataset``, ``pos``; ``n`` the judged examples there, ``rows`` their verdict rows and ``judged_n`` the
    examples judged at any checkpoint of the dataset (the caller's eligibility check: ``rows = n`` everywhere, one
    ``n`` per dataset, ``judged_n = n``); the curve: ``nr`` (right ones), ``learned`` / ``forgotten`` (wrong ->
    right / right -> wrong from the previous checkpoint), ``gains`` (right here, wrong at the first; McNemar's losses
    against the first follow: gains - (nr - nr at the first)); for the kinds: ``ever_n`` (right at some
    checkpoint), ``latest_n`` (right at the latest), ``stays_n`` (first right here and right at every later
    checkpoint: at the first position the easy examples, later the ones learned here); the listed examples, each the
    first ``limit`` by index: ``stays_listed`` (of ``stays_n``), ``forgotten_listed`` (the listed forgotten examples
    whose first right checkpoint is this one), ``hard_listed`` (judged and never right, the same on every row). The
    caller sums (the flips are the transitions ``learned`` + ``forgotten``), and sorts the lists: a bitmap of at most
    32 elements is a hash set, whose ``bitmapToArray`` is in hash order (``bitmapSubsetLimit`` does pick the
    smallest elements).

    Exact when eligible: every checkpoint judged the same examples of the dataset, each by one verdict (then an
    example's previous checkpoint is the previous one, and its first the first). Kinds from these: easy = ``stays_n``
    at the first position, learned = ``stays_n`` at the later ones (one flip, wrong -> right), hard = n - ``ever_n``,
    forgotten = ``ever_n`` - ``latest_n``, unstable = ``latest_n`` - easy - learned. Parameters: ``ids`` (eval ids in
    training order), ``limit``, and ``dataset`` when filtered.

    Written for ClickHouse's query analysis as much as for its execution (over 50 checkpoints x 10,000 examples the
    analysis is most of the time, and it grows with every function call and query level): one level of window
    functions over the per-checkpoint bitmaps -- the previous and first checkpoint's, the union and the latest of the
    dataset, the union before each checkpoint and the intersection from it on -- and no lambdas, no arrays of bitmaps.
    docs/decisions.md "Benchmark"."""
    dataset_filter = "AND dataset = %(dataset)s" if with_dataset else ""
    return f"""
    SELECT dataset, pos, n, rows, bitmapCardinality(judged_any) AS judged_n,
           bitmapCardinality(r) AS nr, bitmapAndnotCardinality(r, prev) AS learned,
           bitmapAndnotCardinality(prev, r) AS forgotten, bitmapAndnotCardinality(r, first) AS gains,
           bitmapCardinality(ever) AS ever_n, bitmapCardinality(latest) AS latest_n,
           bitmapAndCardinality(first_right, right_on) AS stays_n,
           bitmapToArray(bitmapSubsetLimit(bitmapAnd(first_right, right_on), 0, %(limit)s)) AS stays_listed,
           bitmapToArray(bitmapAnd(first_right, bitmapSubsetLimit(bitmapAndnot(ever, latest), 0, %(limit)s)))
               AS forgotten_listed,
           bitmapToArray(bitmapSubsetLimit(bitmapAndnot(v, ever), 0, %(limit)s)) AS hard_listed
    FROM (
        -- per (dataset, checkpoint): judged v, right r, and along the series (window series: the dataset's checkpoints
        -- in order, before: the earlier ones, from_here: this one and the later ones)
        SELECT dataset, pos, n, rows, v, r,
               lagInFrame(r, 1, r) OVER series AS prev, first_value(r) OVER series AS first,
               groupBitmapOrState(v) OVER series AS judged_any, groupBitmapOrState(r) OVER series AS ever,
               last_value(r) OVER series AS latest,
               bitmapAndnot(r, groupBitmapOrState(r) OVER before) AS first_right,
               groupBitmapAndState(r) OVER from_here AS right_on
        FROM (
            SELECT dataset, indexOf(%(ids)s, eval_id) - 1 AS pos,
                   groupBitmapOrState(judged) AS v, groupBitmapOrState(judged_right) AS r,
                   sum(bitmapCardinality(judged)) AS rows, bitmapCardinality(v) AS n
            FROM example_sets FINAL
            WHERE eval_id IN %(ids)s {dataset_filter}
            GROUP BY dataset, pos
            HAVING n > 0)
        WINDOW series AS (PARTITION BY dataset ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING),
               before AS (PARTITION BY dataset ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
               from_here AS (PARTITION BY dataset ORDER BY pos DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
    """
