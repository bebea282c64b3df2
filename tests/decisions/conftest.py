"""Fixtures of the decision tests: a fresh embedded chDB store per test (the real store, real SQL)."""

from __future__ import annotations

import pytest

from budeval.logs import configure as configure_logs


@pytest.fixture(scope="session", autouse=True)
def _logs_to_the_session_stderr() -> None:
    """Configure budeval's logs before any test captures output: the CLI configures them on first use, binding the
    stderr of that moment, which under ``capsys`` is closed after the test (later log lines would fail)."""
    configure_logs()
