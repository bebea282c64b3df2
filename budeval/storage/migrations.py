"""Forward-only, numbered ClickHouse migrations, recorded with a checksum in ``schema_migrations``.

Every statement is idempotent (``IF NOT EXISTS``), so a migration interrupted between its statements and its record
simply runs again. A store whose recorded version is newer than this code knows refuses to work
(:class:`~budeval.errors.SchemaVersionError`) instead of writing rows an older schema does not describe.
Why each engine and ORDER BY: see docs/storage.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MIGRATIONS_TABLE = "schema_migrations"

CREATE_MIGRATIONS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree ORDER BY version
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def checksum(self) -> str:
        text = "\n;\n".join(" ".join(s.split()) for s in self.statements)
        return hashlib.sha256(text.encode()).hexdigest()


_INITIAL = (
    # One row per evaluation; every status change is a new row, the highest `row_version` wins (FINAL / argMax).
    """
    CREATE TABLE IF NOT EXISTS evaluations (
        eval_id String,
        experiment_id Nullable(String),
        status LowCardinality(String),
        params_hash String,
        model_name String,
        model_source String,
        model_revision String,
        datasets Array(String),
        reused_from Nullable(String),
        reason Nullable(String),
        archive_url Nullable(String),
        created_at Nullable(DateTime64(3, 'UTC')),
        finished_at Nullable(DateTime64(3, 'UTC')),
        provenance String CODEC(ZSTD(1)),
        labels Map(String, String),
        updated_at DateTime64(6, 'UTC'),
        row_version UInt64,
        INDEX params_hash_idx params_hash TYPE bloom_filter GRANULARITY 4
    ) ENGINE = ReplacingMergeTree(row_version) ORDER BY eval_id
    """,
    # One row per (eval, run, model, dataset, metric); `run_at` (the OpenCompass run's timestamp) orders "latest".
    """
    CREATE TABLE IF NOT EXISTS scores (
        eval_id String,
        run_id LowCardinality(String),
        model LowCardinality(String),
        dataset LowCardinality(String),
        metric LowCardinality(String),
        score Nullable(Float64),
        version LowCardinality(String),
        mode LowCardinality(String),
        status LowCardinality(String),
        run_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree ORDER BY (eval_id, run_id, model, dataset, metric)
    """,
    """
    CREATE TABLE IF NOT EXISTS dataset_status (
        eval_id String,
        run_id LowCardinality(String),
        model LowCardinality(String),
        dataset LowCardinality(String),
        status LowCardinality(String),
        reason Nullable(String),
        run_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree ORDER BY (eval_id, run_id, model, dataset)
    """,
    # The big table: sorted so that one evaluation's examples of one dataset are contiguous (flips, per-example
    # comparisons and deletes of one (eval, run) read a narrow key range); the texts compress with ZSTD. Plain String
    # (not LowCardinality) for the repeated key columns: the client builds LowCardinality dictionaries row by row in
    # Python, which halved insert throughput; sorted repeated values compress to almost nothing anyway.
    """
    CREATE TABLE IF NOT EXISTS predictions (
        eval_id String,
        run_id String,
        model String,
        dataset String,
        example_index UInt32,
        prompt String CODEC(ZSTD(1)),
        prediction String CODEC(ZSTD(1)),
        gold String CODEC(ZSTD(1)),
        correct Nullable(Bool)
    ) ENGINE = ReplacingMergeTree ORDER BY (eval_id, dataset, model, example_index, run_id)
    """,
)

#: The current score rows with their evaluation's name, experiment, status and labels (a view's `*` is expanded when
#: it is created: migration 3 makes it again for the columns it adds).
_SCORES_CURRENT = """
    SELECT s.*, e.model_name AS eval_model_name, e.experiment_id AS experiment_id, e.status AS eval_status,
           e.labels AS labels
    FROM scores AS s FINAL
    LEFT JOIN (SELECT eval_id, model_name, experiment_id, status, labels FROM evaluations FINAL) AS e
        ON s.eval_id = e.eval_id
"""

_ANALYST_VIEWS = (
    # Analysts query these instead of remembering FINAL: the current row per evaluation / per score.
    """
    CREATE VIEW IF NOT EXISTS evaluations_current AS
    SELECT * FROM evaluations FINAL
    """,
    f"CREATE VIEW IF NOT EXISTS scores_current AS {_SCORES_CURRENT}",
)

_RESULT_DETAILS = (
    # Why a score is missing (NaN, an evaluator's error, outputs outside the run) and which judge model gave it. The
    # judge joins the key: one run judged by several judges has one row per judge for the same metric. (A new key
    # column must come in the same ALTER, without a default expression: '' for every existing row.)
    """
    ALTER TABLE scores ADD COLUMN IF NOT EXISTS reason Nullable(String),
        ADD COLUMN IF NOT EXISTS judge LowCardinality(String),
        MODIFY ORDER BY (eval_id, run_id, model, dataset, metric, judge)
    """,
    # The evaluator's numeric per-example score, where it gives one.
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS score Nullable(Float64)",
    # Replicas (`n` samples per example) are rows of their own: the replica joins the sorting key, else the
    # ReplacingMergeTree would collapse them. ClickHouse allows a new column in the key only when added by the same
    # ALTER and without a default expression (UInt16's implicit default is 0, the value of every existing row).
    """
    ALTER TABLE predictions ADD COLUMN IF NOT EXISTS replica UInt16,
        MODIFY ORDER BY (eval_id, dataset, model, example_index, run_id, replica)
    """,
    # A view's `*` is expanded when it is created: made again so that it shows the new columns.
    f"CREATE OR REPLACE VIEW scores_current AS {_SCORES_CURRENT}",
)

_PROVENANCE_COLUMNS = (
    # Provenance analysts filter on, as columns (the rest stays JSON in `provenance`): the model's pinned identity (hub
    # commit or folder digest), the OpenCompass version that ran, the GPU model and count the runs reported.
    "ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS model_commit String DEFAULT '' AFTER model_revision",
    "ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS engine_version LowCardinality(String) DEFAULT ''"
    " AFTER model_commit",
    "ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS gpu_type LowCardinality(String) DEFAULT '' AFTER engine_version",
    "ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS gpu_count UInt16 DEFAULT 0 AFTER gpu_type",
    # The view was created with `SELECT *` before these columns existed: recreated so that it shows them.
    "CREATE OR REPLACE VIEW evaluations_current AS SELECT * FROM evaluations FINAL",
)

_ARCHIVE_PENDING = (
    # An evaluation finished while its archive was unreachable past the retry window: its rows are stored, its raw
    # files wait on the results volume for the service's archive retry loop (budeval/service/housekeeping.py).
    "ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS archive_pending Bool DEFAULT false AFTER archive_url",
    "CREATE OR REPLACE VIEW evaluations_current AS SELECT * FROM evaluations FINAL",
)

_CHECKPOINT_COLUMNS = (
    # The request's `checkpoint` block (docs/decisions.md "Checkpoint series"): a series' evaluations are found by
    # `checkpoint_series` and ordered by `checkpoint_step`. Rows stored before have '' / NULL (the series then falls
    # back to `experiment_id` and the `step` label).
    "ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS checkpoint_series String DEFAULT '' AFTER experiment_id",
    "ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS checkpoint_step Nullable(UInt64) AFTER checkpoint_series",
    "ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS checkpoint_tokens Nullable(UInt64) AFTER checkpoint_step",
    "CREATE OR REPLACE VIEW evaluations_current AS SELECT * FROM evaluations FINAL",
)

_PREDICTIONS_STORED_AT = (
    # When a prediction row was stored: what the predictions TTL (setting `predictions_ttl_s`, applied outside the
    # numbered migrations by budeval/storage/clickhouse_ttl.py) counts from. Rows stored before this migration get the
    # migration's time (MATERIALIZE writes it into every part: a default left to be computed at read time would be
    # `now()` at every merge, and such rows would never expire).
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS stored_at DateTime('UTC') DEFAULT now()",
    "ALTER TABLE predictions MATERIALIZE COLUMN stored_at",
)

_JUDGES = (
    # Judges (docs/usage.md "Judges"): each example's judge answer beside its prediction (its verdict is `correct`),
    # the evaluation's judge (name, pinned commit or endpoint, template hash) and, for a re-judged evaluation, the
    # evaluation whose stored predictions it judged again.
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS judge_answer String DEFAULT '' CODEC(ZSTD(1))",
    "ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS judge String DEFAULT '' AFTER checkpoint_tokens",
    "ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS rejudge_of Nullable(String) AFTER judge",
    "CREATE OR REPLACE VIEW evaluations_current AS SELECT * FROM evaluations FINAL",
)

_RUN_USAGE = (
    # An endpoint model's requests and tokens per run (budeval/engine/results/usage.py): one row per (eval, run),
    # replaced with the run's other rows when it is stored again. Token counts are NULL when the endpoint reported none.
    """
    CREATE TABLE IF NOT EXISTS run_usage (
        eval_id String,
        run_id String,
        requests UInt64,
        failed_requests UInt64,
        prompt_tokens Nullable(UInt64),
        completion_tokens Nullable(UInt64),
        total_tokens Nullable(UInt64),
        run_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree ORDER BY (eval_id, run_id)
    """,
)

#: What one group of prediction rows holds, as roaring bitmaps of ``example_index`` (the example identity the gate and
#: the series pair on is (dataset, example_index); the dataset is part of the group key, so the index itself is the
#: bitmap's element: exact, ordered, no hash collisions). ``judged``: rows with a verdict; ``judged_right``: verdict
#: true; ``scored_only``: no verdict but a finite numeric score (what the gate compares besides verdicts).
EXAMPLE_SETS_SELECT = """
    SELECT eval_id, dataset, model, run_id, replica,
           groupBitmapStateIf(example_index, correct IS NOT NULL) AS judged,
           groupBitmapStateIf(example_index, ifNull(correct, false)) AS judged_right,
           groupBitmapStateIf(example_index, correct IS NULL AND isFinite(ifNull(score, nan))) AS scored_only
"""

_EXAMPLE_SETS = (
    # Per (eval, dataset, model, run, replica) the examples present and right (docs/decisions.md "Example sets"): the
    # gate and the series read these few bitmaps instead of every prediction row. Bitmaps merge by union, so a block
    # inserted twice (a retried insert, the backfill below overlapping the view) leaves them unchanged; rows leave only
    # through the store's deletes, which delete the same (eval, run) here.
    """
    CREATE TABLE IF NOT EXISTS example_sets (
        eval_id String,
        dataset String,
        model String,
        run_id String,
        replica UInt16,
        judged AggregateFunction(groupBitmap, UInt32),
        judged_right AggregateFunction(groupBitmap, UInt32),
        scored_only AggregateFunction(groupBitmap, UInt32)
    ) ENGINE = AggregatingMergeTree ORDER BY (eval_id, dataset, model, run_id, replica)
    """,
    # Every insert into predictions (a run's rows, a reused evaluation's copy) also lands here, aggregated per block.
    f"""
    CREATE MATERIALIZED VIEW IF NOT EXISTS example_sets_mv TO example_sets AS
    {EXAMPLE_SETS_SELECT}
    FROM predictions
    GROUP BY eval_id, dataset, model, run_id, replica
    """,
    # The rows stored before this migration (idempotent: a union with what the view already wrote).
    f"""
    INSERT INTO example_sets
    {EXAMPLE_SETS_SELECT}
    FROM predictions FINAL
    GROUP BY eval_id, dataset, model, run_id, replica
    """,
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial", _INITIAL),
    Migration(2, "analyst_views", _ANALYST_VIEWS),
    Migration(3, "result_details", _RESULT_DETAILS),
    Migration(4, "provenance_columns", _PROVENANCE_COLUMNS),
    Migration(5, "archive_pending", _ARCHIVE_PENDING),
    Migration(6, "checkpoint_columns", _CHECKPOINT_COLUMNS),
    Migration(7, "example_sets", _EXAMPLE_SETS),
    Migration(8, "predictions_stored_at", _PREDICTIONS_STORED_AT),
    Migration(9, "run_usage", _RUN_USAGE),
    Migration(10, "judges", _JUDGES),
)

LATEST_VERSION = MIGRATIONS[-1].version
