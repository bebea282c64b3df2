"""The ClickHouse result store (a server over HTTP or embedded chDB, both through clickhouse-connect).

Writes are keyed so that a retried activity never duplicates a row: ``store_run`` replaces everything of one
(eval, run) (delete only when rows exist, then insert), and every table is a ReplacingMergeTree on its natural key as
a second line of defence against two writers racing. Small writes of concurrent callers (evaluation rows, runs whose
predictions fit one batch) share inserts through a group commit: ClickHouse pays per insert, not per row. A larger
run's predictions stream from the parser in column-oriented batches that a background thread parses while two insert
threads (own clients) serialise and send them (the engine releases the GIL while it ingests a block, so serialising,
parsing and ingesting overlap on two cores). Safe to call from many threads: one lock guards the client.
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from budeval.errors import BudevalError, SchemaVersionError, StoreQueryError, StoreUnavailableError
from budeval.logs import get_logger
from budeval.schemas.results import DatasetStatus, MetricRow, ParsedRun, PredictionBatch
from budeval.storage.base import EvaluationRecord, ScoreRow, StoreReport
from budeval.storage.groupcommit import GroupCommit
from budeval.storage.migrations import CREATE_MIGRATIONS_TABLE, MIGRATIONS, MIGRATIONS_TABLE, Migration
from budeval.storage.queries import (
    EXAMPLES_SQL,
    CompareRow,
    ExampleRow,
    FlipRow,
    FlipSummaryRow,
    LeaderboardMode,
    LeaderboardRow,
    flip_summary_sql,
    flips_sql,
    leaderboard_sql,
    pair_by_model,
)

T = TypeVar("T")

PREDICTION_COLUMNS = [
    "eval_id",
    "run_id",
    "model",
    "dataset",
    "example_index",
    "replica",
    "prompt",
    "prediction",
    "gold",
    "correct",
    "score",
]
SCORE_COLUMNS = (
    "eval_id",
    "run_id",
    "model",
    "dataset",
    "metric",
    "score",
    "version",
    "mode",
    "status",
    "run_at",
    "reason",
    "judge",
)
STATUS_COLUMNS = ("eval_id", "run_id", "model", "dataset", "status", "reason", "run_at")
#: The columns of an evaluation row that EvaluationRecord carries (read and written).
EVALUATION_FIELDS = (
    "eval_id",
    "experiment_id",
    "status",
    "params_hash",
    "model_name",
    "model_source",
    "model_revision",
    "datasets",
    "reused_from",
    "reason",
    "archive_url",
    "created_at",
    "finished_at",
    "provenance",
    "labels",
    "model_commit",
    "engine_version",
    "gpu_type",
    "gpu_count",
)
EVALUATION_COLUMNS = (*EVALUATION_FIELDS, "updated_at", "row_version")
_RUN_TABLES = ("predictions", "scores", "dataset_status")
#: How long a group commit waits for company while the store is busy (see budeval/storage/groupcommit.py).
DEFAULT_LINGER_S = 0.05
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_version_lock = threading.Lock()
_last_version = 0


def _next_row_version() -> int:
    """Strictly increasing within the process, wall-clock based across processes: the latest write wins."""
    global _last_version
    with _version_lock:
        _last_version = max(time.time_ns(), _last_version + 1)
        return _last_version


def _release(context: Any) -> None:
    """Drop an insert context's reference to the last batch (``data = None`` leaves the column lists in place)."""
    if context is not None:
        context.data = [[]]  # zero rows: the public setter replaces the held columns with an empty one


def run_time(timestamp: str) -> datetime:
    """OpenCompass's timestamp folder name (``20261123_081443``) as UTC; unknown formats sort first."""
    try:
        return datetime.strptime(timestamp, "%Y%m%d_%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return _EPOCH


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: ClickHouse error codes (``src/Common/ErrorCodes.cpp``) that mean the statement itself is wrong: a retry cannot
#: change the answer, so the caller fails at once with the reason. Anything else -- no code (connection refused,
#: HTTP 5xx), timeouts (159, 209, 210), memory (241), too many parts (252), a read-only replica (242), Keeper (999)
#: -- is transient. Sorted by hand from the codes a wrong statement or schema produces.
TERMINAL_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        10,  # NOT_FOUND_COLUMN_IN_BLOCK
        16,  # NO_SUCH_COLUMN_IN_TABLE
        20,  # NUMBER_OF_COLUMNS_DOESNT_MATCH
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        36,  # BAD_ARGUMENTS
        41,  # CANNOT_PARSE_DATETIME
        43,  # ILLEGAL_TYPE_OF_ARGUMENT
        44,  # ILLEGAL_COLUMN
        46,  # UNKNOWN_FUNCTION
        47,  # UNKNOWN_IDENTIFIER
        48,  # NOT_IMPLEMENTED
        50,  # UNKNOWN_TYPE
        53,  # TYPE_MISMATCH
        57,  # TABLE_ALREADY_EXISTS
        60,  # UNKNOWN_TABLE
        62,  # SYNTAX_ERROR
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        81,  # UNKNOWN_DATABASE
        115,  # UNKNOWN_SETTING
        164,  # READONLY
        190,  # SIZES_OF_ARRAYS_DONT_MATCH
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
    }
)
_CODE = re.compile(r"\bCode:\s*(\d+)")


def store_error(what: str, where: str, exc: BaseException) -> BudevalError:
    """The budeval error for a failed ClickHouse call: StoreQueryError (terminal) when the server's error code is in
    TERMINAL_CODES, else StoreUnavailableError (transient, retried with backoff)."""
    message = f"ClickHouse {what} failed at {where}: {_first_line(exc)}"
    codes = {int(c) for c in _CODE.findall(str(exc))}
    if codes & TERMINAL_CODES:
        return StoreQueryError(message)
    return StoreUnavailableError(message)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass
class _RunRows:
    """One run's rows on their way into the store (predictions only when they fit one batch)."""

    eval_id: str
    run_id: str
    run_at: datetime
    metrics: list[MetricRow]
    statuses: list[DatasetStatus]
    predictions: PredictionBatch | None = None


@dataclass
class _EvaluationRow:
    values: list[Any]  # EVALUATION_COLUMNS


def _prediction_columns(eval_id: str, run_id: str, block: PredictionBatch) -> list[list[Any]]:
    """PREDICTION_COLUMNS of one batch; the constant key columns are ``[value] * n`` (C speed, no per-row Python)."""
    n = len(block)
    return [
        [eval_id] * n,
        [run_id] * n,
        block.model,
        block.dataset,
        block.example_index,
        block.replica if len(block.replica) == n else [0] * n,
        block.prompt,
        block.prediction,
        block.gold,
        block.correct,
        block.score if len(block.score) == n else [None] * n,
    ]


def _score_rows(run: _RunRows) -> list[tuple[Any, ...]]:
    """SCORE_COLUMNS rows: one per metric, plus one without a metric for a (model, dataset) that is not ``ok`` and has
    no metric at all, so its failure shows in results. ``reason``: the metric's own (NaN, not a number) or, for a
    dataset that is not ``ok``, the dataset's."""
    status_of = {(s.model, s.dataset): s for s in run.statuses}
    head = (run.eval_id, run.run_id)
    rows: list[tuple[Any, ...]] = []
    for m in run.metrics:
        status = status_of.get((m.model, m.dataset))
        name = status.status if status is not None else ("ok" if m.score is not None else "missing")
        if m.score is None and m.reason:  # this metric's own value is unusable (NaN, text): failed whatever the rest
            name = "failed"
        reason = m.reason or (status.reason if status is not None and name != "ok" else None)
        rows.append(
            (*head, m.model, m.dataset, m.metric, m.score, m.version, m.mode, name, run.run_at, reason, m.judge or "")
        )
    scored = {(m.model, m.dataset) for m in run.metrics}
    rows += [
        (*head, s.model, s.dataset, "", None, "", "", s.status, run.run_at, s.reason, "")
        for s in run.statuses
        if (s.model, s.dataset) not in scored and s.status != "ok"
    ]
    return rows


class ClickHouseStore:
    """``ResultStore`` plus analyst queries over one clickhouse-connect client (guarded by a lock: chDB is one
    session per process, and a client handle must not interleave calls)."""

    def __init__(
        self,
        client: Any,
        where: str,
        connect: Callable[[], Any] | None = None,
        batch_size: int = 32_000,
        insert_clients: int = 2,
        insert_settings: dict[str, Any] | None = None,
        linger_s: float = DEFAULT_LINGER_S,
    ) -> None:
        self._client = client
        self._where = where  # the DSN without password, for messages
        self._connect = connect  # opens one more client on the same store (parallel prediction inserts)
        self._extra_clients: list[Any] = []
        self._lock = threading.RLock()
        self.batch_size = batch_size
        self.insert_clients = max(1, insert_clients)
        #: Per-insert settings of prediction blocks; embedded chDB uses one engine thread per insert, so that the
        #: parser keeps a core of the two (measured faster end to end than letting the engine take both).
        self.insert_settings = dict(insert_settings or {})
        self._log = get_logger(component="store")
        #: (table, columns) -> column types: without them every insert first asks the server ``DESCRIBE TABLE``
        #: (one more statement per insert, ~0.6-1 ms on chDB, a round trip on a server). Cleared by ``migrate``.
        self._types: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
        #: Small writes of concurrent callers -- evaluation rows and runs that fit one batch -- share inserts: one
        #: queue for both, so a batch costs at most five statements whatever it holds. When they arrive faster than one
        #: per ``linger_s``, a batch waits that long for company (half as many inserts under load; docs/storage.md).
        self._commits: GroupCommit[_RunRows | _EvaluationRow, int] = GroupCommit(self._write_batch, linger_s=linger_s)

    # -- plumbing --------------------------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with self._lock:
            try:
                return fn()
            except BudevalError:
                raise
            except Exception as exc:
                raise store_error(what, self._where, exc) from exc

    def _rows(self, what: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self._call(what, lambda: list(self._client.query(sql, parameters=params or {}).result_rows))

    def _command(self, what: str, sql: str, params: dict[str, Any] | None = None) -> None:
        self._call(what, lambda: self._client.command(sql, parameters=params or {}))

    def _column_types(self, client: Any, table: str, columns: Sequence[str]) -> list[Any]:
        key = (table, tuple(columns))
        types = self._types.get(key)
        if types is None:
            context = client.create_insert_context(table=table, column_names=list(columns), column_oriented=True)
            types = self._types[key] = list(context.column_types)
        return types

    def _insert(
        self, table: str, columns: Sequence[str], data: list[list[Any]], settings: dict[str, Any] | None = None
    ) -> None:
        def insert() -> None:
            types = self._column_types(self._client, table, columns)
            self._client.insert(
                table, data, column_names=list(columns), column_types=types, column_oriented=True, settings=settings
            )

        self._call(f"insert into {table}", insert)

    def close(self) -> None:
        with self._lock:
            for client in [*self._extra_clients, self._client]:
                try:
                    client.close()
                except Exception as exc:  # closing is best effort; the process may be exiting
                    self._log.warning("closing a ClickHouse client failed", error=_first_line(exc))
            self._extra_clients.clear()

    # -- migrations ------------------------------------------------------------------------------------------------
    def applied_migrations(self) -> dict[int, tuple[str, str]]:
        """version -> (name, checksum) of every recorded migration."""
        self._command("create migrations table", CREATE_MIGRATIONS_TABLE)
        rows = self._rows("read migrations", f"SELECT version, name, checksum FROM {MIGRATIONS_TABLE} FINAL")
        return {int(v): (str(n), str(c)) for v, n, c in rows}

    def schema_version(self) -> int:
        applied = self.applied_migrations()
        return max(applied, default=0)

    def migrate(self) -> list[str]:
        with self._lock:
            self._types.clear()
            applied = self.applied_migrations()
            known = {m.version: m for m in MIGRATIONS}
            newer = sorted(v for v in applied if v not in known)
            if newer:
                raise SchemaVersionError(
                    f"the store at {self._where} has schema version {max(newer)}, newer than this budeval knows "
                    f"({MIGRATIONS[-1].version}); upgrade budeval"
                )
            for version, (name, checksum) in applied.items():
                if known[version].checksum != checksum:
                    raise SchemaVersionError(
                        f"migration {version:04d}_{name} differs from the one applied to {self._where} "
                        "(migrations are append-only: add a new one instead of editing)"
                    )
            done: list[str] = []
            for migration in MIGRATIONS:
                if migration.version in applied:
                    continue
                self._apply(migration)
                done.append(migration.id)
            if done:
                self._log.info("migrations applied", applied=done)
            return done

    def _apply(self, migration: Migration) -> None:
        for statement in migration.statements:
            self._command(f"migration {migration.id}", statement)
        self._insert(
            MIGRATIONS_TABLE,
            ("version", "name", "checksum", "applied_at"),
            [[migration.version], [migration.name], [migration.checksum], [datetime.now(UTC)]],
        )

    # -- evaluations -----------------------------------------------------------------------------------------------
    def record_evaluation(self, record: EvaluationRecord) -> None:
        row = [
            record.eval_id,
            record.experiment_id,
            record.status,
            record.params_hash,
            record.model_name,
            record.model_source,
            record.model_revision,
            list(record.datasets),
            record.reused_from,
            record.reason,
            record.archive_url,
            _utc(record.created_at),
            _utc(record.finished_at),
            json.dumps(record.provenance, sort_keys=True, default=str),
            dict(record.labels),
            record.model_commit,
            record.engine_version,
            record.gpu_type,
            record.gpu_count,
            datetime.now(UTC),
            _next_row_version(),  # taken now, so the latest call wins even when a batch holds both
        ]
        self._commits.submit(_EvaluationRow(row))

    def _write_batch(self, items: Sequence[_RunRows | _EvaluationRow]) -> list[int]:
        """One group commit: the evaluation rows in one insert, the runs as :meth:`_write_runs`; the number of
        prediction rows per item (0 for evaluation rows)."""
        rows = [item.values for item in items if isinstance(item, _EvaluationRow)]
        runs = [item for item in items if isinstance(item, _RunRows)]
        with self._lock:
            if rows:
                self._insert("evaluations", EVALUATION_COLUMNS, [list(c) for c in zip(*rows, strict=True)])
            stored = iter(self._write_runs(runs) if runs else [])
        return [next(stored) if isinstance(item, _RunRows) else 0 for item in items]

    def _evaluation_query(self, where: str, order: str = "") -> str:
        columns = ", ".join(EVALUATION_FIELDS)
        return f"SELECT {columns} FROM evaluations FINAL WHERE {where} {order} LIMIT 1"

    @staticmethod
    def _to_record(row: tuple[Any, ...]) -> EvaluationRecord:
        values = dict(zip(EVALUATION_FIELDS, row, strict=True))
        values["provenance"] = json.loads(values["provenance"] or "{}")
        values["labels"] = dict(values["labels"] or {})
        values["datasets"] = list(values["datasets"] or [])
        values["created_at"] = _utc(values["created_at"])
        values["finished_at"] = _utc(values["finished_at"])
        return EvaluationRecord.model_validate(values)

    def get_evaluation(self, eval_id: str) -> EvaluationRecord | None:
        rows = self._rows("read evaluation", self._evaluation_query("eval_id = %(e)s"), {"e": eval_id})
        return self._to_record(rows[0]) if rows else None

    def find_reusable(self, params_hash: str) -> EvaluationRecord | None:
        if not params_hash:
            return None
        sql = self._evaluation_query(
            "params_hash = %(h)s AND status = 'completed'",
            "ORDER BY finished_at DESC NULLS LAST, updated_at DESC",
        )
        rows = self._rows("find reusable evaluation", sql, {"h": params_hash})
        return self._to_record(rows[0]) if rows else None

    def copy_results(self, source_eval: str, target_eval: str, model: str | None = None) -> int:
        """A reused evaluation's own score, status and prediction rows: the source's rows under ``target_eval`` (runs,
        run times, versions, statuses and per-example verdicts kept; ``model`` renames the model). Replaces an earlier
        copy (a retried step). Predictions are copied, not read through ``reused_from``, so ``results --examples``,
        ``compare --examples`` and flips treat a reused evaluation like any other (docs/storage.md)."""
        params: dict[str, Any] = {"s": source_eval, "t": target_eval, "m": model or ""}
        model_expr = "if(%(m)s = '', model, %(m)s)"
        score_cols = ", ".join(SCORE_COLUMNS)
        status_cols = ", ".join(STATUS_COLUMNS)
        prediction_cols = ", ".join(PREDICTION_COLUMNS)
        copied_predictions = ", ".join(
            "%(t)s" if c == "eval_id" else model_expr if c == "model" else c for c in PREDICTION_COLUMNS
        )
        with self._lock:
            present = self._rows(
                "look up a previous copy",
                "(SELECT 'scores' FROM scores WHERE eval_id = %(t)s LIMIT 1) UNION ALL "
                "(SELECT 'dataset_status' FROM dataset_status WHERE eval_id = %(t)s LIMIT 1) UNION ALL "
                "(SELECT 'predictions' FROM predictions WHERE eval_id = %(t)s LIMIT 1)",
                params,
            )
            for (table,) in present:
                self._command(f"delete from {table}", f"DELETE FROM {table} WHERE eval_id = %(t)s", params)
            self._command(
                "copy scores",
                f"INSERT INTO scores ({score_cols}) SELECT %(t)s, run_id, {model_expr}, dataset, metric, score, "
                "version, mode, status, run_at, reason, judge FROM scores FINAL WHERE eval_id = %(s)s",
                params,
            )
            self._command(
                "copy dataset statuses",
                f"INSERT INTO dataset_status ({status_cols}) SELECT %(t)s, run_id, {model_expr}, dataset, status, "
                "reason, run_at FROM dataset_status FINAL WHERE eval_id = %(s)s",
                params,
            )
            self._command(
                "copy predictions",
                f"INSERT INTO predictions ({prediction_cols}) SELECT {copied_predictions} "
                "FROM predictions FINAL WHERE eval_id = %(s)s",
                params,
            )
            return self.count("scores", target_eval)

    # -- one run's rows --------------------------------------------------------------------------------------------
    def store_run(self, eval_id: str, run_id: str, parsed: ParsedRun) -> StoreReport:
        """Replace the rows of one (eval, run). A run whose predictions fit one batch (most runs) shares its inserts
        with the runs other threads store at the same time (:class:`GroupCommit`); a larger one streams."""
        metrics = list(parsed.metrics)
        statuses = list(parsed.statuses)
        run = _RunRows(eval_id, run_id, run_time(parsed.facts.timestamp), metrics, statuses)
        log = get_logger(eval_id=eval_id, run_id=run_id, component="store")
        started = time.perf_counter()
        # The parser fills every batch but the last, so a short first batch is the only one; asking for the next one
        # also surfaces a parse error before any row is written.
        batches = iter(parsed.prediction_batches(self.batch_size))
        first = next(batches, None)
        second = next(batches, None) if first is not None and len(first) < self.batch_size else None
        if first is None or (len(first) < self.batch_size and second is None):
            run.predictions = first
            run.statuses = list(parsed.statuses)  # after the prediction pass: a dataset whose predictions broke
            predictions = self._commits.submit(run)
        else:
            ahead = [first] if second is None else [first, second]
            with self._lock:
                self._clear_runs([(eval_id, run_id)])
                predictions = self._insert_predictions_parallel(eval_id, run_id, itertools.chain(ahead, batches))
                run.statuses = list(parsed.statuses)
                self._insert_run_rows([run])
        elapsed = time.perf_counter() - started
        log.info("run stored", metrics=len(metrics), predictions=predictions, seconds=round(elapsed, 3))
        return StoreReport(metrics=len(metrics), predictions=predictions)

    def _write_runs(self, runs: Sequence[_RunRows]) -> list[int]:
        """One group commit of small runs (called by :meth:`_write_batch`, which holds the lock): one lookup, the
        deletes it calls for, one insert per table."""
        latest = {(r.eval_id, r.run_id): r for r in runs}  # the same run twice in a batch: the last copy wins
        self._clear_runs(list(latest))
        unique = list(latest.values())
        filled = [(r, r.predictions) for r in unique if r.predictions is not None and len(r.predictions)]
        if filled:
            columns: list[list[Any]] = [[] for _ in PREDICTION_COLUMNS]
            for r, block in filled:
                for column, part in zip(columns, _prediction_columns(r.eval_id, r.run_id, block), strict=True):
                    column.extend(part)
            self._insert("predictions", PREDICTION_COLUMNS, columns, self.insert_settings)
        self._insert_run_rows(unique)
        return [len(r.predictions) if r.predictions is not None else 0 for r in runs]

    def _clear_runs(self, keys: Sequence[tuple[str, str]]) -> None:
        """Delete previous copies of these (eval, run)s, touching only tables that hold one (a delete costs ~1 s).

        One query asks all tables at once: a store of a small run is a handful of statements, each one counts."""
        if not keys:
            return
        params: dict[str, Any] = {}
        terms = []
        for i, (eval_id, run_id) in enumerate(keys):
            params[f"e{i}"], params[f"r{i}"] = eval_id, run_id
            terms.append(f"(eval_id = %(e{i})s AND run_id = %(r{i})s)")
        where = " OR ".join(terms)
        lookup = " UNION ALL ".join(f"(SELECT '{table}' FROM {table} WHERE {where} LIMIT 1)" for table in _RUN_TABLES)
        present = {str(row[0]) for row in self._rows("look up previous copies of runs", lookup, params)}
        for table in _RUN_TABLES:
            if table in present:
                self._command(f"delete from {table}", f"DELETE FROM {table} WHERE {where}", params)

    def _insert_run_rows(self, runs: Sequence[_RunRows]) -> None:
        """The scores and dataset statuses of some runs, one insert per table."""
        statuses: list[tuple[Any, ...]] = []
        scores: list[tuple[Any, ...]] = []
        for r in runs:
            statuses += [(r.eval_id, r.run_id, s.model, s.dataset, s.status, s.reason, r.run_at) for s in r.statuses]
            scores += _score_rows(r)
        if statuses:
            self._insert("dataset_status", STATUS_COLUMNS, [list(c) for c in zip(*statuses, strict=True)])
        if scores:
            self._insert("scores", SCORE_COLUMNS, [list(c) for c in zip(*scores, strict=True)])

    def _insert_clients(self) -> list[Any]:
        """Clients for prediction inserts: while one serialises a block (Python, holds the GIL) another's block is
        ingested by the engine (C++, GIL released); about 20% faster than one client on two cores."""
        if self._connect is None:
            return [self._client]
        while len(self._extra_clients) < self.insert_clients - 1:
            self._extra_clients.append(self._call("open an insert client", self._connect))
        return [self._client, *self._extra_clients]

    def _insert_predictions_parallel(self, eval_id: str, run_id: str, batches: Iterator[PredictionBatch]) -> int:
        clients = self._insert_clients()
        handoff: queue.Queue[PredictionBatch | BaseException | None] = queue.Queue(maxsize=1)
        stop = threading.Event()
        errors: list[BaseException] = []
        totals: list[int] = []

        def put(item: PredictionBatch | BaseException | None) -> bool:
            while not stop.is_set():
                try:
                    handoff.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def fail(exc: BaseException) -> None:
            errors.append(exc)
            stop.set()

        def produce() -> None:
            try:
                for batch in batches:
                    if not put(batch):
                        return
                put(None)
            except BaseException as exc:  # re-raised by the caller's thread
                fail(exc)

        def consume(client: Any) -> None:
            done = 0
            # One insert context per thread and run: one table description instead of one per batch. Its columns
            # must be released explicitly: clickhouse-connect's context sits in a reference cycle and keeps the last
            # batch alive until a full GC, which let memory grow by a batch per insert (measured: +40 MB / 50k rows).
            context: Any = None
            try:
                while not stop.is_set():
                    try:
                        item = handoff.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    if item is None:
                        put(None)  # the end marker is for every consumer
                        break
                    if isinstance(item, BaseException):
                        raise item
                    n = len(item)
                    if n:
                        columns = _prediction_columns(eval_id, run_id, item)
                        del item
                        try:
                            if context is None:
                                context = client.create_insert_context(
                                    table="predictions",
                                    column_names=PREDICTION_COLUMNS,
                                    column_types=self._column_types(client, "predictions", PREDICTION_COLUMNS),
                                    column_oriented=True,
                                    settings=self.insert_settings,
                                )
                            client.insert(data=columns, context=context)
                        except Exception as exc:
                            raise store_error("insert into predictions", self._where, exc) from exc
                        finally:
                            del columns
                            _release(context)
                        done += n
            except BaseException as exc:
                fail(exc)
            totals.append(done)

        threads = [threading.Thread(target=produce, name=f"budeval-parse-{eval_id}", daemon=True)]
        threads += [
            threading.Thread(target=consume, args=(c,), name=f"budeval-insert-{eval_id}-{i}", daemon=True)
            for i, c in enumerate(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return sum(totals)

    # -- queries ---------------------------------------------------------------------------------------------------
    def results(self, eval_id: str) -> list[ScoreRow]:
        rows = self._rows(
            "read results",
            """
            SELECT eval_id, toString(run_id), toString(model), toString(dataset), toString(metric), score,
                   toString(status), toString(version), toString(mode), reason, toString(judge)
            FROM scores FINAL WHERE eval_id = %(e)s
            ORDER BY model, dataset, metric, run_id
            """,
            {"e": eval_id},
        )
        return [
            ScoreRow(
                eval_id=e,
                run_id=r,
                model=m,
                dataset=d,
                metric=me,
                score=s,
                status=st,
                version=v,
                mode=mo,
                reason=why,
                judge=judge or None,
            )
            for e, r, m, d, me, s, st, v, mo, why, judge in rows
        ]

    def statuses(self, eval_id: str) -> list[DatasetStatus]:
        rows = self._rows(
            "read dataset statuses",
            """
            SELECT toString(model), toString(dataset), toString(status), reason FROM dataset_status FINAL
            WHERE eval_id = %(e)s ORDER BY model, dataset, run_id
            """,
            {"e": eval_id},
        )
        return [DatasetStatus(model=m, dataset=d, status=s, reason=r) for m, d, s, r in rows]

    def leaderboard(
        self,
        datasets: Sequence[str] | None = None,
        metric: str | None = None,
        mode: LeaderboardMode = "latest",
        limit: int = 50,
        offset: int = 0,
        *,
        dataset: str | None = None,
    ) -> list[LeaderboardRow]:
        """Models ranked per metric by the mean of their per-dataset scores (``latest`` or ``best`` each).

        ``datasets`` empty or None: every dataset; ``dataset`` is a one-dataset shorthand. Ordered by metric, then
        by how many of the datasets a model covers, then by mean score (descending), then model name.
        """
        wanted = list(datasets or []) + ([dataset] if dataset else [])
        if mode not in ("latest", "best"):
            raise ValueError(f"mode must be latest or best, not {mode!r}")
        sql = leaderboard_sql(mode, with_datasets=bool(wanted), with_metric=metric is not None)
        params: dict[str, Any] = {"limit": max(0, int(limit)), "offset": max(0, int(offset))}
        if wanted:
            params["datasets"] = wanted
        if metric is not None:
            params["metric"] = metric
        rows = self._rows("leaderboard", sql, params)
        return [
            LeaderboardRow(
                rank=int(rank),
                model=model,
                metric=met,
                score=float(mean),
                datasets=int(covered),
                scores=dict(zip(ds, (float(s) for s in sc), strict=True)),
                eval_ids=dict(zip(ds, ev, strict=True)),
            )
            for rank, model, met, mean, covered, ds, sc, ev in rows
        ]

    def compare(self, eval_a: str, eval_b: str) -> list[CompareRow]:
        """Per (model, dataset, metric): A's and B's score and B - A (models paired as :func:`pair_by_model`)."""
        rows_a = [r for r in self.results(eval_a) if r.metric]
        rows_b = [r for r in self.results(eval_b) if r.metric]
        by_model = pair_by_model({r.model for r in rows_a}, {r.model for r in rows_b})

        def key(row: ScoreRow) -> tuple[str, str, str]:
            return (row.model if by_model else "", row.dataset, row.metric)

        side_a = {key(r): r for r in rows_a}
        side_b = {key(r): r for r in rows_b}
        out: list[CompareRow] = []
        for k in sorted(set(side_a) | set(side_b)):
            a, b = side_a.get(k), side_b.get(k)
            score_a = a.score if a else None
            score_b = b.score if b else None
            out.append(
                CompareRow(
                    model_a=a.model if a else None,
                    model_b=b.model if b else None,
                    dataset=k[1],
                    metric=k[2],
                    score_a=score_a,
                    score_b=score_b,
                    delta=None if score_a is None or score_b is None else round(score_b - score_a, 10),
                    status_a=a.status if a else None,
                    status_b=b.status if b else None,
                )
            )
        return out

    def examples(self, eval_id: str, limit: int = 10) -> list[ExampleRow]:
        """The first ``limit`` stored predictions of each (model, dataset) of ``eval_id`` with their verdicts."""
        rows = self._rows("read examples", EXAMPLES_SQL, {"e": eval_id, "limit": max(0, int(limit))})
        return [
            ExampleRow(
                model=m,
                dataset=d,
                example_index=int(i),
                prompt=p,
                prediction=pr,
                gold=g,
                correct=c,
                replica=int(r),
                score=sc,
            )
            for m, d, i, p, pr, g, c, r, sc in rows
        ]

    def _prediction_models(self, eval_id: str) -> set[str]:
        rows = self._rows(
            "read prediction models",
            "SELECT DISTINCT toString(model) FROM predictions WHERE eval_id = %(e)s",
            {"e": eval_id},
        )
        return {str(r[0]) for r in rows}

    def flips(self, eval_a: str, eval_b: str, dataset: str | None = None, limit: int = 100) -> list[FlipRow]:
        """Examples that A judged correct and B wrong, or the other way round (both judged)."""
        by_model = pair_by_model(self._prediction_models(eval_a), self._prediction_models(eval_b))
        params: dict[str, Any] = {"a": eval_a, "b": eval_b, "limit": max(0, int(limit))}
        if dataset is not None:
            params["dataset"] = dataset
        rows = self._rows("flips", flips_sql(by_model, with_dataset=dataset is not None), params)
        return [
            FlipRow(
                model_a=ma,
                model_b=mb,
                dataset=ds,
                example_index=int(idx),
                replica=int(replica),
                direction=direction,
                gold=gold,
                prediction_a=pa,
                prediction_b=pb,
                prompt=prompt,
            )
            for ma, mb, ds, idx, replica, direction, gold, pa, pb, prompt in rows
        ]

    def flip_summary(self, eval_a: str, eval_b: str) -> list[FlipSummaryRow]:
        by_model = pair_by_model(self._prediction_models(eval_a), self._prediction_models(eval_b))
        rows = self._rows("flip summary", flip_summary_sql(by_model), {"a": eval_a, "b": eval_b})
        return [
            FlipSummaryRow(
                model_a=ma, model_b=mb, dataset=ds, compared=int(n), correct_to_wrong=int(cw), wrong_to_correct=int(wc)
            )
            for ma, mb, ds, n, cw, wc in rows
        ]

    def count(self, table: str, eval_id: str, final: bool = False) -> int:
        """Rows of one evaluation in one table (tests and operators: proves idempotent stores)."""
        if table not in ("evaluations", "scores", "dataset_status", "predictions"):
            raise ValueError(f"unknown table {table!r}")
        suffix = " FINAL" if final else ""
        rows = self._rows("count", f"SELECT count() FROM {table}{suffix} WHERE eval_id = %(e)s", {"e": eval_id})
        return int(rows[0][0])
