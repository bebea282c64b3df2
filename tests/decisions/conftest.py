"""Fixtures of the decision tests: a fresh embedded chDB store per test (the real store, real SQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from budeval.storage.clickhouse import ClickHouseStore
from budeval.storage.factory import open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    """chDB allows one data dir per process at a time: each test opens its own and closes it afterwards."""
    opened = open_store(f"chdb://{tmp_path / 'ch'}")
    opened.migrate()
    try:
        yield opened
    finally:
        opened.close()
