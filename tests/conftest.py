"""Fixtures shared by every test folder: the real OpenCompass venv + model (``opencompass_env``: installed by
scripts/setup_opencompass.sh at first use -- tests that need them ask for this fixture, never a collection-time skip,
which a cold machine would take before the install), a real OpenAI-compatible server serving that model per session
(``openai_server``: scripts/openai_server.sh, stopped by PID) and a fresh migrated chDB store per test (``store``)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
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


OPENAI_SCRIPT = REPO / "scripts" / "openai_server.sh"


@dataclass(frozen=True)
class OpenAIServer:
    """A running ``scripts/openai_server.sh`` server: where it answers, the model name it serves, its PID and log."""

    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the served model name; requests naming another model get 400
    pid: int
    log: Path
    state: Path

    def requests(self) -> int:
        """Chat/completion requests the server has received so far (one log line each)."""
        return self.log.read_text(errors="replace").count("[Request received]")


def openai_server_script(state: Path, command: str, timeout: float = 900) -> dict[str, str]:
    """Runs ``scripts/openai_server.sh COMMAND`` with its state in ``state``; the ``env`` lines as a dict."""
    env = dict(os.environ, BUDEVAL_OPENAI_STATE=str(state))
    done = subprocess.run(
        ["bash", str(OPENAI_SCRIPT), command], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openai_server.sh {command} failed ({done.returncode}): {done.stderr.strip()[-3000:]}")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def start_openai_server(state: Path) -> OpenAIServer:
    """Starts (or reuses) the server whose state folder is ``state``; see ``openai_server``."""
    info = openai_server_script(state, "start")
    return OpenAIServer(
        base_url=info["BUDEVAL_OPENAI_BASE_URL"],
        model=info["BUDEVAL_OPENAI_MODEL"],
        pid=int(info["BUDEVAL_OPENAI_PID"]),
        log=Path(info["BUDEVAL_OPENAI_LOG"]),
        state=state,
    )


@pytest.fixture(scope="session")
def openai_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAIServer]:
    """A real OpenAI-compatible server (``transformers serve``) on loopback serving SmolLM2-135M-Instruct, shared by
    the session; installed at first use by the script (its venv, and the model through scripts/setup_opencompass.sh:
    minutes when cold), stopped by PID at the end. Tests that kill a server start their own
    (``start_openai_server`` with their own state folder)."""
    state = tmp_path_factory.mktemp("openai-state")
    server = start_openai_server(state)
    try:
        yield server
    finally:
        openai_server_script(state, "stop", timeout=120)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    """chDB allows one data dir per process at a time: each test opens its own and closes it afterwards."""
    opened = open_store(f"chdb://{tmp_path / 'ch'}")
    opened.migrate()
    try:
        yield opened
    finally:
        opened.close()
