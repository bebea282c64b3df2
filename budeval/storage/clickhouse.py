"""The ClickHouse result store (a server over HTTP or embedded chDB, both through clickhouse-connect).

Writes are keyed so that a retried activity never duplicates a row: ``store_run`` replaces everything of one
(eval, run) (delete only when rows exist, then insert), and every table is a ReplacingMergeTree on its natural key as
a second line of defence against two writers racing. Small writes of concurrent callers (evaluation rows, runs whose
predictions fit one batch) share inserts through a group commit: ClickHouse pays per insert, not per row. A larger
run's predictions stream from the parser in column-oriented batches that a background thread parses while two insert
threads (own clients) serialise and send them (the engine releases the GIL while it ingests a block, so serialising,
parsing and ingesting overlap on two cores). Safe to call from many threads: one lock guards the client.

Split along its seams: row layouts (``clickhouse_rows``), error sorting (``clickhouse_errors``), reads and analyst
queries (``clickhouse_reads``, a mixin), the web UI's browsing reads (``clickhouse_browse``), decisions
(``clickhouse_decisions``), the TTL (``clickhouse_ttl``), migrations (``clickhouse_migrate``), a large run's parallel
prediction inserts (``clickhouse_parallel``); writes and the client plumbing stay here.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from budeval.errors import BudevalError
from budeval.logs import get_logger
from budeval.schemas.results import ParsedRun
from budeval.storage.base import EvaluationRecord, StoreReport
from budeval.storage.clickhouse_browse import StoreBrowse
from budeval.storage.clickhouse_decisions import StoreDecisions
from budeval.storage.clickhouse_errors import TERMINAL_CODES, _first_line, store_error
from budeval.storage.clickhouse_migrate import StoreMigrations
from budeval.storage.clickhouse_parallel import insert_predictions_parallel
from budeval.storage.clickhouse_reads import StoreReads
from budeval.storage.clickhouse_rows import (
    _RUN_TABLES,
    EVALUATION_COLUMNS,
    PREDICTION_COLUMNS,
    SCORE_COLUMNS,
    STATUS_COLUMNS,
    USAGE_COLUMNS,
    USAGE_FIELDS,
    _EvaluationRow,
    _next_row_version,
    _prediction_columns,
    _RunRows,
    _score_rows,
    _utc,
    run_time,
)
from budeval.storage.clickhouse_ttl import PredictionsTtl
from budeval.storage.groupcommit import GroupCommit

T = TypeVar("T")
__all__ = ["DEFAULT_LINGER_S", "TERMINAL_CODES", "ClickHouseStore", "run_time", "store_error"]

#: How long a group commit waits for company while the store is busy (see budeval/storage/groupcommit.py).
DEFAULT_LINGER_S = 0.05


class ClickHouseStore(StoreMigrations, PredictionsTtl, StoreReads, StoreDecisions, StoreBrowse):
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
            record.archive_pending,
            record.checkpoint_series,
            record.checkpoint_step,
            record.checkpoint_tokens,
            record.judge,
            record.rejudge_of,
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
            self.clear_results(target_eval)
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

    def clear_results(self, eval_id: str) -> None:
        """Delete every score, dataset-status, prediction and usage row of ``eval_id`` (an earlier copy, or the rows of
        an earlier attempt that a re-run supersedes) and the predictions' example sets; touches only tables that hold
        some (a delete costs ~1 s)."""
        params = {"t": eval_id}
        with self._lock:
            present = self._rows(
                "look up earlier rows",
                "(SELECT 'scores' FROM scores WHERE eval_id = %(t)s LIMIT 1) UNION ALL "
                "(SELECT 'dataset_status' FROM dataset_status WHERE eval_id = %(t)s LIMIT 1) UNION ALL "
                "(SELECT 'predictions' FROM predictions WHERE eval_id = %(t)s LIMIT 1) UNION ALL "
                "(SELECT 'run_usage' FROM run_usage WHERE eval_id = %(t)s LIMIT 1) UNION ALL "
                "(SELECT 'example_sets' FROM example_sets WHERE eval_id = %(t)s LIMIT 1)",
                params,
            )
            for (table,) in present:
                self._command(f"delete from {table}", f"DELETE FROM {table} WHERE eval_id = %(t)s", params)

    # -- one run's rows --------------------------------------------------------------------------------------------
    def store_run(self, eval_id: str, run_id: str, parsed: ParsedRun) -> StoreReport:
        """Replace the rows of one (eval, run). A run whose predictions fit one batch (most runs) shares its inserts
        with the runs other threads store at the same time (:class:`GroupCommit`); a larger one streams. Contract:
        one verdict per (model, dataset, example_index, replica) -- the example sets keep a union where ``predictions
        FINAL`` keeps one row (docs/decisions.md "Example sets"; ``budeval migrate`` reconciles)."""
        metrics = list(parsed.metrics)
        statuses = list(parsed.statuses)
        run = _RunRows(eval_id, run_id, run_time(parsed.facts.timestamp), metrics, statuses,
                       usage=parsed.facts.usage)
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
                predictions = insert_predictions_parallel(
                    self._insert_clients(), lambda c: self._column_types(c, "predictions", PREDICTION_COLUMNS),
                    self.insert_settings, self._where, eval_id, run_id, itertools.chain(ahead, batches))
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
        usage: list[tuple[Any, ...]] = []
        for r in runs:
            statuses += [(r.eval_id, r.run_id, s.model, s.dataset, s.status, s.reason, r.run_at) for s in r.statuses]
            scores += _score_rows(r)
            if r.usage is not None:
                usage.append((r.eval_id, r.run_id, *(getattr(r.usage, f) for f in USAGE_FIELDS), r.run_at))
        if statuses:
            self._insert("dataset_status", STATUS_COLUMNS, [list(c) for c in zip(*statuses, strict=True)])
        if scores:
            self._insert("scores", SCORE_COLUMNS, [list(c) for c in zip(*scores, strict=True)])
        if usage:
            self._insert("run_usage", USAGE_COLUMNS, [list(c) for c in zip(*usage, strict=True)])

    def _insert_clients(self) -> list[Any]:
        """Clients for prediction inserts: while one serialises a block (Python, holds the GIL) another's block is
        ingested by the engine (C++, GIL released); about 20% faster than one client on two cores."""
        if self._connect is None:
            return [self._client]
        while len(self._extra_clients) < self.insert_clients - 1:
            self._extra_clients.append(self._call("open an insert client", self._connect))
        return [self._client, *self._extra_clients]
