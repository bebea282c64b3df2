"""Fixtures shared by every test folder: the real OpenCompass venv + model (``opencompass_env``: installed by
scripts/setup_opencompass.sh at first use -- tests that need them ask for this fixture, never a collection-time skip,
which a cold machine would take before the install) and a fresh migrated chDB store per test (``store``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from budeval.storage.clickhouse import ClickHouseStore
from budeval.storage.factory import open_store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def opencompass_env() -> dict[str, str]:
    """``BUDEVAL_OPENCOMPASS_PYTHON`` and ``BUDEVAL_MODEL_PATH``; installs them on first use (minutes when cold)."""
    setup = REPO / "scripts" / "setup_opencompass.sh"
    done = subprocess.run(["bash", str(setup)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"scripts/setup_opencompass.sh failed ({done.returncode}):\n{done.stderr[-3000:]}")
    printed = subprocess.run(["bash", str(setup), "--print-env"], capture_output=True, text=True, check=True).stdout
    env = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
    assert Path(env["BUDEVAL_OPENCOMPASS_PYTHON"]).exists()
    assert (Path(env["BUDEVAL_MODEL_PATH"]) / "config.json").exists()
    return env


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    """chDB allows one data dir per process at a time: each test opens its own and closes it afterwards."""
    opened = open_store(f"chdb://{tmp_path / 'ch'}")
    opened.migrate()
    try:
        yield opened
    finally:
        opened.close()
