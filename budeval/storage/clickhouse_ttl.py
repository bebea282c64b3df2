"""The predictions TTL: the setting ``predictions_ttl_s`` made into the table's ``TTL`` clause. A mixin of
:class:`~budeval.storage.clickhouse.ClickHouseStore`.

Why not a numbered migration: a migration is fixed text with a checksum (budeval/storage/migrations.py), while the
TTL is configuration that may change from one release to the next. Migration 8 adds what the TTL needs (the column
``stored_at``); :meth:`PredictionsTtl.apply_predictions_ttl` then brings the table's TTL to the setting -- ``ALTER
TABLE predictions MODIFY TTL stored_at + INTERVAL n SECOND``, or ``REMOVE TTL`` for 0 -- and does nothing when the
table already says so. ``budeval migrate`` (the chart's migration Job) and the service's start call it.

Only a TTL of budeval's own shape is ever removed: a TTL an operator wrote by hand on ``predictions`` (another
expression) is left alone when the setting is 0, and replaced when it is not (the setting owns the TTL then).
How ClickHouse applies it: rows expire when their part is merged (``OPTIMIZE TABLE predictions FINAL`` forces it);
``MODIFY TTL`` also rewrites the existing parts in the background (``materialize_ttl_after_modify``), so the first
change on a big table costs one pass over it. docs/storage.md "Retention".
"""

from __future__ import annotations

import re
from typing import Any, Literal

from budeval.errors import ValidationError
from budeval.storage.decision_queries import PREDICTIONS_ENGINE_SQL, SETS_AGAINST_ROWS_SQL
from budeval.storage.migrations import EXAMPLE_SETS_SELECT

#: How ClickHouse prints budeval's TTL back in ``system.tables.engine_full``.
_OURS = re.compile(r"\bTTL\s+stored_at\s*\+\s*toIntervalSecond\((\d+)\)")
_ANY_TTL = re.compile(r"\bTTL\b")

TtlChange = Literal["unchanged", "set", "removed", "kept foreign"]


class PredictionsTtl:
    """Reads and sets the TTL of ``predictions`` (``_rows``/``_command`` of the store)."""

    def _rows(self, what: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _command(self, what: str, sql: str, params: dict[str, Any] | None = None) -> None:
        raise NotImplementedError

    def _predictions_engine(self) -> str:
        rows = self._rows("read the predictions table's TTL", PREDICTIONS_ENGINE_SQL)
        return str(rows[0][0] or "") if rows else ""

    def predictions_ttl(self) -> int | None:
        """Seconds of budeval's TTL on ``predictions``; None when the table has none (or one budeval did not set)."""
        match = _OURS.search(self._predictions_engine())
        return int(match.group(1)) if match else None

    def predictions_expire(self, engine: str | None = None) -> bool:
        """Whether ``predictions`` has any TTL (budeval's or a hand-written one): rows may then have left the table
        without the store's deletes, so their example sets (migration 7) may hold more than the rows. ``engine``:
        the table's ``engine_full`` when the caller read it already (else it is read)."""
        return bool(_ANY_TTL.search(self._predictions_engine() if engine is None else engine))

    def apply_predictions_ttl(self, ttl_s: int) -> TtlChange:
        """Make the table's TTL ``ttl_s`` seconds after ``stored_at`` (0: no TTL). Idempotent; needs migration 8.

        Raises :class:`~budeval.errors.ValidationError` for a negative value and the store's errors for the ALTER.
        """
        if ttl_s < 0:
            raise ValidationError(f"predictions_ttl_s must be >= 0, not {ttl_s}", field="predictions_ttl_s")
        engine = self._predictions_engine()
        match = _OURS.search(engine)
        current = int(match.group(1)) if match else None
        if ttl_s == 0:
            if match is None:
                return "kept foreign" if _ANY_TTL.search(engine) else "unchanged"
            self._command("remove the predictions TTL", "ALTER TABLE predictions REMOVE TTL")
            self._refill_expired_example_sets()
            return "removed"
        if current == ttl_s:
            return "unchanged"
        self._command(
            "set the predictions TTL", f"ALTER TABLE predictions MODIFY TTL stored_at + INTERVAL {int(ttl_s)} SECOND"
        )
        return "set"

    def _refill_expired_example_sets(self) -> list[str]:
        """Make the example sets of evaluations whose rows the TTL deleted equal their rows again (the sets of the
        evaluations that no longer have as many rows as examples: deleted, then filled from ``predictions FINAL``).
        Without a TTL the decisions read the sets unchecked (docs/decisions.md "Example sets"). The ids refilled."""
        ids = [str(r[0]) for r in self._rows("evaluations with example sets",
                                             "SELECT DISTINCT eval_id FROM example_sets")]
        if not ids:
            return []
        counts: dict[tuple[str, str], int] = {}
        for eval_id, side, n in self._rows("example sets against rows", SETS_AGAINST_ROWS_SQL, {"ids": ids}):
            counts[(str(eval_id), str(side))] = int(n)
        stale = [e for e in ids if counts.get((e, "sets"), 0) != counts.get((e, "rows"), 0)]
        if stale:
            params = {"ids": stale}
            self._command("delete expired example sets", "DELETE FROM example_sets WHERE eval_id IN %(ids)s", params)
            self._command(
                "refill example sets",
                f"INSERT INTO example_sets {EXAMPLE_SETS_SELECT} FROM predictions FINAL WHERE eval_id IN %(ids)s "
                "GROUP BY eval_id, dataset, model, run_id, replica",
                params,
            )
        return stale

    def expiring_predictions(self, ttl_s: int) -> int:
        """Prediction rows older than ``ttl_s`` seconds (what the TTL removes at the next merges); 0 for ``ttl_s`` 0."""
        if ttl_s <= 0:
            return 0
        rows = self._rows(
            "count expiring predictions",
            "SELECT count() FROM predictions WHERE stored_at + toIntervalSecond(%(t)s) <= now()",
            {"t": int(ttl_s)},
        )
        return int(rows[0][0]) if rows else 0
