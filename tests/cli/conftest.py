"""Fixtures of the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def dsn(tmp_path: Path) -> str:
    """A fresh chDB store of this test."""
    return f"chdb://{tmp_path / 'ch'}"
