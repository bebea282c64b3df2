"""SQL of the decisions (regression gate, checkpoint series): per-example pairing and aggregation run in ClickHouse,
so only a handful of numbers per dataset (and a histogram of per-example differences) leave the store.

docs/decisions.md shows the same queries for analysts to run by hand.
"""

from __future__ import annotations

#: An example's value on one side: its verdict as 0 / 100 (points of accuracy), else the evaluator's numeric score;
#: rows with neither are not compared.
VALUE_SQL = "if(correct IS NULL, score, toFloat64(assumeNotNull(correct)) * 100)"


def _side(alias: str, by_model: bool) -> str:
    unit_model = "model" if by_model else "''"
    return f"""
        SELECT {unit_model} AS unit_model, any(model) AS abbr, dataset, example_index,
               avg(assumeNotNull(v)) AS m, count() AS k, min(is_verdict) AS verdicts
        FROM (SELECT model, dataset, example_index, {VALUE_SQL} AS v, correct IS NOT NULL AS is_verdict
              FROM predictions FINAL WHERE eval_id = %({alias})s)
        WHERE v IS NOT NULL
        GROUP BY unit_model, dataset, example_index
    """


def paired_sql(by_model: bool) -> str:
    """Per (model pairing, dataset): paired / one-sided example counts, McNemar's discordant counts, the means and
    the histogram of per-example differences (candidate ``c`` - baseline ``b``, rounded to 1e-9 so that float noise
    does not split equal differences). Parameters: ``b`` (baseline eval id), ``c`` (candidate eval id)."""
    both = "b.k > 0 AND c.k > 0"
    return f"""
    SELECT dataset,
           anyIf(b.abbr, b.k > 0) AS model_b, anyIf(c.abbr, c.k > 0) AS model_c,
           countIf({both}) AS paired,
           countIf(b.k > 0 AND c.k = 0) AS only_b,
           countIf(b.k = 0 AND c.k > 0) AS only_c,
           countIf({both} AND NOT (b.k = 1 AND c.k = 1 AND b.verdicts AND c.verdicts)) = 0 AS single_verdicts,
           countIf({both} AND b.m = 100 AND c.m = 0) AS losses,
           countIf({both} AND b.m = 0 AND c.m = 100) AS gains,
           avgIf(b.m, {both}) AS mean_b, avgIf(c.m, {both}) AS mean_c,
           sumMapIf([round(c.m - b.m, 9)], [toUInt64(1)], {both}) AS histogram
    FROM ({_side("b", by_model)}) AS b
    FULL OUTER JOIN ({_side("c", by_model)}) AS c USING (unit_model, dataset, example_index)
    GROUP BY unit_model, dataset
    ORDER BY dataset, unit_model
    """


#: ``best:<experiment>``: the evaluation of an experiment with the highest mean of its scores.
BEST_OF_EXPERIMENT_SQL = """
    SELECT eval_id FROM scores_current
    WHERE experiment_id = %(value)s AND score IS NOT NULL AND eval_id != %(exclude)s
      AND eval_status IN ('completed', 'partial', 'reused')
    GROUP BY eval_id
    ORDER BY avg(score) DESC, eval_id ASC
    LIMIT 1
"""

#: ``latest:<label>=<value>``: the newest evaluation carrying that label value.
LATEST_WITH_LABEL_SQL = """
    SELECT eval_id FROM evaluations FINAL
    WHERE labels[%(label)s] = %(value)s AND eval_id != %(exclude)s
      AND status IN ('completed', 'partial', 'reused')
    ORDER BY created_at DESC NULLS LAST, eval_id DESC
    LIMIT 1
"""
