"""Decisions over stored results: paired statistics (``stats``), the regression gate (``gate``) and checkpoint
series (``series``). Pure logic over aggregates the store computes in SQL (docs/decisions.md)."""
