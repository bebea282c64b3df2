"""Fixtures of the decision tests: a fresh embedded chDB store per test (the real store, real SQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from budeval.logs import configure as configure_logs
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


@pytest.fixture(scope="session", autouse=True)
def _logs_to_the_session_stderr() -> None:
    """Configure budeval's logs before any test captures output: the CLI configures them on first use, binding the
    stderr of that moment, which under ``capsys`` is closed after the test (later log lines would fail)."""
    configure_logs()
