"""Fixtures of the storage tests: a fresh embedded chDB store per test, and one real SeaweedFS S3 server per session
(started and stopped by ``scripts/s3_server.sh``)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
S3_SCRIPT = REPO / "scripts" / "s3_server.sh"


def _s3_env(state: Path, command: str) -> dict[str, str]:
    env = dict(os.environ, BUDEVAL_S3_STATE=str(state))
    for name in ("BUDEVAL_S3_ACCESS_KEY", "BUDEVAL_S3_SECRET_KEY"):
        env.pop(name, None)  # the script's static test keys
    done = subprocess.run(["bash", str(S3_SCRIPT), command], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"s3_server.sh {command} failed: {done.stderr.strip()[-2000:]}")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


@pytest.fixture(scope="session")
def s3_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The script's state dir for this session (pid, ports, data), apart from any developer's server."""
    return tmp_path_factory.mktemp("s3-state")


@pytest.fixture(scope="session")
def s3_server(s3_state: Path) -> Iterator[dict[str, str]]:
    """BUDEVAL_S3_ENDPOINT / _ACCESS_KEY / _SECRET_KEY of a real SeaweedFS S3 API on loopback."""
    info = _s3_env(s3_state, "start")
    try:
        yield info
    finally:
        _s3_env(s3_state, "stop")


@pytest.fixture
def s3_env(s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The server's credentials in the environment, where ``open_archive`` reads them."""
    monkeypatch.setenv("BUDEVAL_S3_ACCESS_KEY", s3_server["BUDEVAL_S3_ACCESS_KEY"])
    monkeypatch.setenv("BUDEVAL_S3_SECRET_KEY", s3_server["BUDEVAL_S3_SECRET_KEY"])
    return s3_server
