"""Session fixtures of the deploy tests: helm fetched once, and the real kube-apiserver for the install test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.helm import REPO, helm

APISERVER_SH = REPO / "scripts" / "kube" / "apiserver.sh"


@pytest.fixture(scope="session", autouse=True)
def helm_binary() -> str:
    """Fetches helm (scripts/helm.sh) once before any test, so its download never counts against one test."""
    return helm("--path").strip()


def _apiserver(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(APISERVER_SH), *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[Path]:
    """The admin kubeconfig of scripts/kube/apiserver.sh's apiserver (built once, started if not running)."""
    if not APISERVER_SH.exists():
        pytest.fail("scripts/kube/apiserver.sh is missing (the Kubernetes backend's test cluster)")
    was_running = _apiserver("status", timeout=30).returncode == 0
    started = _apiserver("start")
    if started.returncode != 0:
        pytest.fail(f"scripts/kube/apiserver.sh start failed:\n{started.stderr[-3000:]}")
    line = _apiserver("env", timeout=30).stdout.strip()
    assert line.startswith("KUBECONFIG="), line
    yield Path(line.split("=", 1)[1])
    if not was_running and not os.environ.get("BUDEVAL_KEEP_KUBE"):
        _apiserver("stop", timeout=120)
