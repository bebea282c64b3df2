"""Read models and SQL of the analyst-facing queries: leaderboard, compare and per-example flips.

The SQL lives here (not in the store) so that docs/analysts.md and the code show the same queries; the store only
binds parameters and maps rows to these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

LeaderboardMode = Literal["latest", "best"]
#: Orders of the leaderboard besides its ranking (``rank``): by model name, mean score or datasets covered.
LeaderboardSort = Literal["rank", "model", "score", "datasets"]
_LEADERBOARD_ORDER = {"rank": "rank", "model": "model", "score": "mean", "datasets": "covered"}
FlipDirection = Literal["correct_to_wrong", "wrong_to_correct"]


class LeaderboardRow(BaseModel):
    """One model on a set of datasets for one metric: the mean of its per-dataset scores (latest or best each)."""

    rank: int
    model: str
    metric: str
    score: float  # mean over `datasets` covered datasets, OpenCompass's 0-100 scale
    datasets: int  # how many of the requested datasets have a score for this model
    scores: dict[str, float]  # dataset -> the chosen score
    eval_ids: dict[str, str]  # dataset -> the evaluation the chosen score came from


class CompareRow(BaseModel):
    """A (model, dataset, metric) of evaluation A beside the same of B; ``delta`` = B - A when both are scored."""

    model_a: str | None
    model_b: str | None
    dataset: str
    metric: str
    score_a: float | None
    score_b: float | None
    delta: float | None
    status_a: str | None
    status_b: str | None


class FlipRow(BaseModel):
    """One example judged differently by A and B (both judged: ``correct`` known on both sides)."""

    model_a: str
    model_b: str
    dataset: str
    example_index: int
    replica: int = 0  # with n samples per example, each replica is compared with the same replica of the other side
    direction: FlipDirection
    gold: str
    prediction_a: str
    prediction_b: str
    prompt: str  # cut to PROMPT_CHARS characters


class ExampleRow(BaseModel):
    """One stored prediction with its verdict (``correct`` is None when the evaluator gave none)."""

    model: str
    dataset: str
    example_index: int
    prompt: str  # cut to PROMPT_CHARS characters
    prediction: str
    gold: str
    correct: bool | None
    replica: int = 0
    score: float | None = None  # the evaluator's numeric per-example score, where it gives one
    judge_answer: str = ""  # a judge model's raw answer (datasets scored ``judge``; its verdict is ``correct``)


class FlipSummaryRow(BaseModel):
    """Per dataset: how many examples both sides judged, and how many flipped each way."""

    model_a: str
    model_b: str
    dataset: str
    compared: int
    correct_to_wrong: int
    wrong_to_correct: int


PROMPT_CHARS = 1000

#: The first examples of each (model, dataset) of one evaluation, in example order (``budeval results --examples``).
EXAMPLES_SQL = f"""
    SELECT toString(model), toString(dataset), example_index, leftUTF8(prompt, {PROMPT_CHARS}), prediction, gold,
           correct, replica, score, judge_answer
    FROM predictions FINAL
    WHERE eval_id = %(e)s
    ORDER BY model, dataset, replica, example_index, run_id
    LIMIT %(limit)s BY model, dataset
"""


def pair_by_model(models_a: set[str], models_b: set[str]) -> bool:
    """Whether A and B are matched model by model (same abbrs) or as one model each (two checkpoints).

    Comparing checkpoints means different model names on both sides: when each side holds exactly one model and the
    names differ, rows are matched on (dataset, metric / example) alone.
    """
    return not (len(models_a) == 1 and len(models_b) == 1 and models_a != models_b)


def leaderboard_sql(
    mode: LeaderboardMode, with_datasets: bool, with_metric: bool, sort: LeaderboardSort = "rank",
    descending: bool = False,
) -> str:
    """The leaderboard; ordered by metric, then by ``sort`` (``rank``: as ranked; the rank itself is always the
    ranking's), ties by rank."""
    # "latest": the newest scored run (OpenCompass timestamp, then eval id to break ties); "best": the top score.
    if mode == "latest":
        pick_score = "argMax(assumeNotNull(score), (run_at, eval_id))"
        pick_eval = "argMax(eval_id, (run_at, eval_id))"
    else:
        pick_score = "max(assumeNotNull(score))"
        pick_eval = "argMax(eval_id, (assumeNotNull(score), run_at, eval_id))"
    filters = ["score IS NOT NULL", "metric != ''"]
    if with_datasets:
        filters.append("has(%(datasets)s, toString(dataset))")
    if with_metric:
        filters.append("metric = %(metric)s")
    return f"""
    WITH per_dataset AS (
        SELECT model, dataset, metric, {pick_score} AS chosen, {pick_eval} AS from_eval
        FROM scores FINAL
        WHERE {" AND ".join(filters)}
        GROUP BY model, dataset, metric
    )
    SELECT
        row_number() OVER (PARTITION BY metric ORDER BY count() DESC, avg(chosen) DESC, model ASC) AS rank,
        toString(model) AS model, toString(metric) AS metric, avg(chosen) AS mean, count() AS covered,
        groupArray(toString(dataset)) AS ds, groupArray(chosen) AS sc, groupArray(from_eval) AS ev
    FROM per_dataset
    GROUP BY model, metric
    ORDER BY metric ASC, {_LEADERBOARD_ORDER[sort]} {"DESC" if descending else "ASC"}, rank ASC
    LIMIT %(limit)s OFFSET %(offset)s
    """


def _side(alias: str) -> str:
    return f"""
        SELECT model, dataset, example_index, replica, assumeNotNull(correct) AS ok, prediction, gold, prompt
        FROM predictions FINAL
        WHERE eval_id = %({alias})s AND correct IS NOT NULL {{dataset_filter}}
    """


def _join_on(by_model: bool) -> str:
    on = "a.dataset = b.dataset AND a.example_index = b.example_index AND a.replica = b.replica"
    return on + (" AND a.model = b.model" if by_model else "")


def flips_sql(by_model: bool, with_dataset: bool, with_direction: bool = False, with_text: bool = False) -> str:
    """Flips of A (``a``) and B (``b``): ``dataset``, ``direction`` (``a_ok``: 1 for correct -> wrong) and ``text``
    (case-insensitive, in the prompt, either prediction or the gold) filter when asked; ``limit`` from ``offset``."""
    dataset_filter = "AND dataset = %(dataset)s" if with_dataset else ""
    extra = " AND a.ok = %(a_ok)s" if with_direction else ""
    if with_text:
        extra += (" AND (positionCaseInsensitiveUTF8(a.prompt, %(text)s) > 0 OR positionCaseInsensitiveUTF8("
                  "a.prediction, %(text)s) > 0 OR positionCaseInsensitiveUTF8(b.prediction, %(text)s) > 0 OR "
                  "positionCaseInsensitiveUTF8(a.gold, %(text)s) > 0)")
    side_a = _side("a").format(dataset_filter=dataset_filter)
    side_b = _side("b").format(dataset_filter=dataset_filter)
    return f"""
    SELECT toString(a.model), toString(b.model), toString(a.dataset), a.example_index, a.replica,
           if(a.ok, 'correct_to_wrong', 'wrong_to_correct') AS direction,
           a.gold, a.prediction, b.prediction, leftUTF8(a.prompt, {PROMPT_CHARS})
    FROM ({side_a}) AS a
    INNER JOIN ({side_b}) AS b ON {_join_on(by_model)}
    WHERE a.ok != b.ok{extra}
    ORDER BY a.dataset, a.model, a.example_index, a.replica
    LIMIT %(limit)s OFFSET %(offset)s
    """


def flip_summary_sql(by_model: bool) -> str:
    side = """
        SELECT model, dataset, example_index, replica, assumeNotNull(correct) AS ok
        FROM predictions FINAL
        WHERE eval_id = %({alias})s AND correct IS NOT NULL
    """
    return f"""
    SELECT toString(a.model), toString(b.model), toString(a.dataset), count() AS compared,
           countIf(a.ok AND NOT b.ok) AS correct_to_wrong, countIf(NOT a.ok AND b.ok) AS wrong_to_correct
    FROM ({side.format(alias="a")}) AS a
    INNER JOIN ({side.format(alias="b")}) AS b ON {_join_on(by_model)}
    GROUP BY a.model, b.model, a.dataset
    ORDER BY a.dataset, a.model
    """
