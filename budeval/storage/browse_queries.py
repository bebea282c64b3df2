"""Read models and SQL of the browsing reads the web UI needs besides the analyst queries (budeval/storage/queries.py)
and the decisions' (budeval/storage/decision_queries.py): what the store holds (datasets, metrics, models, series,
recent evaluations), a filtered page of stored predictions, and one example across several evaluations.

The SQL lives here so the UI layer holds none (docs/ui.md); the store binds parameters and maps rows to these models.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from budeval.storage.queries import PROMPT_CHARS

#: Characters of prompt / prediction / gold a row of a page of examples carries (the example's own view has more).
SNIPPET_CHARS = 300
#: Characters of the prompt the view of one example carries.
EXAMPLE_PROMPT_CHARS = 4 * PROMPT_CHARS


class Catalog(BaseModel):
    """What the store holds, for pickers: datasets and metrics with a score, models, series names (sorted)."""

    datasets: list[str]
    metrics: list[str]
    models: list[str]
    series: list[str]


class EvaluationSummary(BaseModel):
    """One evaluation in a list: id, status, model, series and when it was created."""

    eval_id: str
    status: str
    model_name: str
    checkpoint_series: str
    created_at: datetime | None


class ExamplePageRow(BaseModel):
    """One stored prediction in a filtered page; texts cut to :data:`SNIPPET_CHARS`."""

    eval_id: str
    model: str
    dataset: str
    example_index: int
    replica: int
    prompt: str
    prediction: str
    gold: str
    correct: bool | None


class ExampleFilter(BaseModel):
    """Filters of a page of stored predictions; None means any. ``text``: case-insensitive, in the prompt, the
    prediction or the gold."""

    eval_id: str | None = None
    dataset: str | None = None
    model: str | None = None
    correct: bool | None = None
    unjudged: bool = False  # only predictions without a verdict (``correct`` then ignored)
    text: str | None = None


class ExampleHistoryRow(BaseModel):
    """One example's prediction in one evaluation (one row per model and replica)."""

    eval_id: str
    model: str
    replica: int
    prompt: str
    prediction: str
    gold: str
    correct: bool | None
    score: float | None


class MatrixRow(BaseModel):
    """One example of a series' heatmap: its mean verdict (0-1) at each checkpoint position that judged it."""

    dataset: str
    example_index: int
    values: dict[int, float]  # checkpoint position -> mean verdict


CATALOG_SQL = """
    SELECT arraySort(groupUniqArray(toString(dataset))), arraySort(groupUniqArray(toString(metric))),
           arraySort(groupUniqArray(toString(model)))
    FROM scores
    WHERE metric != ''
"""

#: Series names: checkpoint series, and experiments of evaluations without a checkpoint block (CHECKPOINTS_SQL).
SERIES_NAMES_SQL = """
    SELECT DISTINCT if(checkpoint_series != '', checkpoint_series, assumeNotNull(experiment_id)) AS name
    FROM evaluations FINAL
    WHERE (checkpoint_series != '' OR (experiment_id IS NOT NULL AND experiment_id != ''))
      AND status IN ('completed', 'partial', 'reused')
    ORDER BY name
    LIMIT %(limit)s
"""

RECENT_EVALUATIONS_SQL = """
    SELECT eval_id, toString(status), model_name, checkpoint_series, created_at
    FROM evaluations FINAL
    ORDER BY created_at DESC NULLS LAST, eval_id DESC
    LIMIT %(limit)s
"""

EXAMPLE_HISTORY_SQL = f"""
    SELECT eval_id, model, replica, leftUTF8(prompt, {EXAMPLE_PROMPT_CHARS}), prediction, gold, correct, score
    FROM predictions FINAL
    WHERE eval_id IN %(ids)s AND dataset = %(dataset)s AND example_index = %(index)s
    ORDER BY eval_id, model, replica
"""


def examples_page_sql(where: ExampleFilter) -> str:
    """A page of predictions (``limit`` from ``offset``) matching ``where``, in the sorting key's order; parameters
    named as the filter's fields."""
    terms = ["1"]
    if where.eval_id is not None:
        terms.append("eval_id = %(eval_id)s")
    if where.dataset is not None:
        terms.append("dataset = %(dataset)s")
    if where.model is not None:
        terms.append("model = %(model)s")
    if where.unjudged:
        terms.append("correct IS NULL")
    elif where.correct is not None:
        terms.append("correct = %(correct)s")
    if where.text:
        terms.append(
            "(positionCaseInsensitiveUTF8(prompt, %(text)s) > 0 OR positionCaseInsensitiveUTF8(prediction, %(text)s)"
            " > 0 OR positionCaseInsensitiveUTF8(gold, %(text)s) > 0)"
        )
    return f"""
    SELECT eval_id, model, dataset, example_index, replica, leftUTF8(prompt, {SNIPPET_CHARS}),
           leftUTF8(prediction, {SNIPPET_CHARS}), leftUTF8(gold, {SNIPPET_CHARS}), correct
    FROM predictions FINAL
    WHERE {" AND ".join(terms)}
    ORDER BY eval_id, dataset, model, example_index, run_id, replica
    LIMIT %(limit)s OFFSET %(offset)s
    """
