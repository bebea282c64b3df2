"""Session fixture for every real-OpenCompass test (tests/backends, tests/engine, tests/decisions): the venv + model
from scripts/setup_opencompass.sh (idempotent). Tests that need them ask for this fixture, never a skip: a cold
machine installs them at first use (collection-time skip conditions would run before the install)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

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
