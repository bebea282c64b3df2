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
from typing import Any, Literal, NamedTuple

from budeval.errors import ValidationError
from budeval.storage.decision_queries import PREDICTIONS_CREATE_SQL
from budeval.storage.migrations import EXAMPLE_SETS_SELECT

#: The evaluations whose example sets differ from the sets of their rows (``predictions FINAL``), group by group
#: (a group missing on one side compares with empty bitmaps: ``join_use_nulls`` is off).
RECONCILE_SETS_SQL = f"""
    SELECT DISTINCT eval_id
    FROM (SELECT eval_id, dataset, model, run_id, replica, judged, judged_right, scored_only
          FROM example_sets FINAL) AS s
    FULL OUTER JOIN ({EXAMPLE_SETS_SELECT}
                     FROM predictions FINAL GROUP BY eval_id, dataset, model, run_id, replica) AS r
        USING (eval_id, dataset, model, run_id, replica)
    WHERE bitmapXorCardinality(s.judged, r.judged) > 0 OR bitmapXorCardinality(s.judged_right, r.judged_right) > 0
       OR bitmapXorCardinality(s.scored_only, r.scored_only) > 0
    SETTINGS join_use_nulls = 0
"""

#: How ClickHouse prints budeval's TTL back in ``system.tables.engine_full``.
#: Nothing may follow it but the table's SETTINGS: a TTL with a ``WHERE``, a ``GROUP BY``, a move ``TO DISK`` or a
#: second expression is an operator's, not budeval's (left alone when the setting is 0).
_OURS = re.compile(r"\bTTL\s+stored_at\s*\+\s*toIntervalSecond\((\d+)\)\s*(?:SETTINGS\b|$)")
_ANY_TTL = re.compile(r"\bTTL\b")
#: A single-quoted SQL string literal as ClickHouse prints one (backslash escapes).
_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'")

TtlChange = Literal["unchanged", "set", "removed", "kept foreign"]


class TtlApplied(NamedTuple):
    """What :meth:`PredictionsTtl.apply_predictions_ttl` did: the TTL's ``change`` and, when it removed budeval's
    TTL, the eval ids whose example sets it refilled (:meth:`PredictionsTtl.reconcile_example_sets`; else [])."""

    change: TtlChange
    refilled: list[str]


class PredictionsTtl:
    """Reads and sets the TTL of ``predictions`` (``_rows``/``_command`` of the store)."""

    def _rows(self, what: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _command(self, what: str, sql: str, params: dict[str, Any] | None = None) -> None:
        raise NotImplementedError

    def _predictions_create(self) -> str:
        """The ``predictions`` table's ``SHOW CREATE`` (as cheap as ``SELECT 1``; ``system.tables`` costs ~2 ms)."""
        rows = self._rows("read the predictions table's TTL", PREDICTIONS_CREATE_SQL)
        return str(rows[0][0] or "") if rows else ""

    def _predictions_engine(self) -> str:
        """The ``predictions`` table's engine clause as ``system.tables.engine_full`` spells it (``ReplacingMergeTree
        ORDER BY ... TTL ... SETTINGS ...``): the lines of its ``SHOW CREATE`` from ``ENGINE =`` on, one line."""
        _, found, engine = self._predictions_create().partition("\nENGINE = ")
        return " ".join(engine.split()) if found else ""

    def predictions_ttl(self) -> int | None:
        """Seconds of budeval's TTL on ``predictions``; None when the table has none (or one budeval did not set)."""
        match = _OURS.search(self._predictions_engine())
        return int(match.group(1)) if match else None

    def predictions_expire(self) -> bool:
        """Whether ``predictions`` has any TTL -- budeval's, a hand-written table TTL, or a column's (which empties
        that column, e.g. the verdicts, when it expires): rows or verdicts may then have left the table without the
        store's deletes, so their example sets (migration 7) may hold more than the rows. Read from the whole
        ``SHOW CREATE`` without its string literals (a column comment saying "TTL" is not one)."""
        return bool(_ANY_TTL.search(_LITERAL.sub("''", self._predictions_create())))

    def apply_predictions_ttl(self, ttl_s: int) -> TtlApplied:
        """Make the table's TTL ``ttl_s`` seconds after ``stored_at`` (0: no TTL). Idempotent; needs migration 8.
        Removing budeval's TTL also reconciles the example sets (rows it deleted leave their sets behind).

        Raises :class:`~budeval.errors.ValidationError` for a negative value and the store's errors for the ALTER.
        """
        if ttl_s < 0:
            raise ValidationError(f"predictions_ttl_s must be >= 0, not {ttl_s}", field="predictions_ttl_s")
        engine = self._predictions_engine()
        match = _OURS.search(engine)
        current = int(match.group(1)) if match else None
        if ttl_s == 0:
            if match is None:
                return TtlApplied("kept foreign" if _ANY_TTL.search(engine) else "unchanged", [])
            self._command("remove the predictions TTL", "ALTER TABLE predictions REMOVE TTL")
            return TtlApplied("removed", self.reconcile_example_sets())
        if current == ttl_s:
            return TtlApplied("unchanged", [])
        self._command(
            "set the predictions TTL", f"ALTER TABLE predictions MODIFY TTL stored_at + INTERVAL {int(ttl_s)} SECOND"
        )
        return TtlApplied("set", [])

    def reconcile_example_sets(self) -> list[str]:
        """Make every evaluation's example sets equal the sets of its rows again; the eval ids refilled (sorted).

        The sets follow the rows exactly while rows change only through the store (insert, or delete then insert).
        What changes them otherwise leaves the sets behind, and no decision can see it cheaply: a TTL that deleted
        rows or emptied verdicts and was then removed, an ``INSERT`` that replaces a row in place (same key, another
        verdict: the union keeps the old one). This recomputes every group's bitmaps from ``predictions FINAL`` and
        compares (:data:`RECONCILE_SETS_SQL`, one pass over the table), then deletes and refills the sets of the
        evaluations that differ. Run by ``budeval migrate`` (the chart's migration Job) and when budeval removes its
        TTL; docs/decisions.md "Example sets"."""
        stale = sorted(str(r[0]) for r in self._rows("compare the example sets with the rows", RECONCILE_SETS_SQL))
        if stale:
            params = {"ids": stale}
            self._command("delete stale example sets", "DELETE FROM example_sets WHERE eval_id IN %(ids)s", params)
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
