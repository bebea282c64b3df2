"""What the store-backed subcommands share: their ``--store``/``--json`` flags, a migrated store for the length of a
command, and plain-text tables (``--json`` output is the only thing on stdout; logs go to stderr)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from budeval.config import Settings
from budeval.logs import configure as configure_logs
from budeval.storage.base import ScoreRow
from budeval.storage.clickhouse import ClickHouseStore
from budeval.storage.factory import open_store


def store_arg(p: argparse.ArgumentParser) -> None:
    """``--store DSN`` (default ``BUDEVAL_STORE_DSN``, else the data dir's chDB)."""
    p.add_argument(
        "--store", metavar="DSN", help="chdb:///path or http(s)://user:pass@host:port/db (BUDEVAL_STORE_DSN)"
    )


def json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON only")


def non_negative(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {value}")
    return value


@contextmanager
def migrated_store(args: argparse.Namespace) -> Iterator[ClickHouseStore]:
    """The store of ``--store`` (or the settings'), migrated, closed at the end. Logs go to stderr as JSON lines."""
    configure_logs()  # stdout carries only the command's output
    dsn = args.store or Settings.from_env().resolved_store_dsn()
    store = open_store(dsn)
    try:
        store.migrate()
        yield store
    finally:
        store.close()


def emit_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def fmt(score: float | None) -> str:
    """A score with two decimals; ``-`` for none."""
    return "-" if score is None else f"{score:.2f}"


def cut(text: str, width: int = 40) -> str:
    """``text`` on one line (white space folded), cut to ``width`` characters with ``...``."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Left-aligned columns as wide as their widest cell, two spaces apart."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n")
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def score_table(rows: Sequence[ScoreRow], out: TextIO) -> None:
    table(
        ("model", "dataset", "metric", "score", "status", "reason"),
        [(r.model, r.dataset, r.metric or "-", fmt(r.score), r.status, cut(r.reason or "")) for r in rows],
        out,
    )
