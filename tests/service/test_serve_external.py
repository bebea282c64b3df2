"""`budeval serve` against a sidecar in another process, as under daprd: configuration only (DAPR_* variables).

The "daprd" here is the embedded sidecar run as its own process (`python -m budeval.sidecar`), the app is found by
the sidecar at --app-url; `serve` must pick the external mode from DAPR_GRPC_PORT alone, refuse to start without an
API token, and run an evaluation submitted through the topic to `completed`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.serve_process import FAKE_PYTHON, FIXTURE, ROOT
from tests.service.test_serve_embedded import request
from tests.support import free_port, wait_until


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[tuple[dict[str, str], int]]:
    grpc_port, http_port, app_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "BUDEVAL_"))}
    env["APP_API_TOKEN"] = "external-app-token"
    proc = subprocess.Popen(
        [sys.executable, "-m", "budeval.sidecar", "--state", str(tmp_path / "daprd.db"), "--grpc-port",
         str(grpc_port), "--http-port", str(http_port), "--app-port", str(app_port)],
        env=env, stdout=(tmp_path / "sidecar.log").open("wb"), stderr=subprocess.STDOUT, cwd=ROOT,
    )

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "sidecar.log").read_text()
        try:
            return httpx.get(f"http://127.0.0.1:{http_port}/v1.0/healthz/outbound", timeout=2).is_success
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=60, what="the sidecar process")
    env.update(
        DAPR_GRPC_PORT=str(grpc_port), DAPR_HTTP_PORT=str(http_port),
        BUDEVAL_DATA_DIR=str(tmp_path / "data"), BUDEVAL_PORT=str(app_port),
        BUDEVAL_OPENCOMPASS_PYTHON=str(FAKE_PYTHON), BUDEVAL_POLL_INITIAL_S="1", BUDEVAL_POLL_MAX_S="2",
        FAKE_OC_FIXTURE=str(FIXTURE), BUDEVAL_RUN_ENV_PASSTHROUGH="FAKE_OC_*", BUDEVAL_MODELS_ROOT="/models",
    )
    try:
        yield env, app_port
    finally:
        stop(proc)


def test_external_sidecar_needs_a_token_then_runs_an_evaluation(
    sidecar: tuple[dict[str, str], int], tmp_path: Path
) -> None:
    env, app_port = sidecar
    refused = subprocess.run([sys.executable, "-m", "budeval.cli.main", "serve"], env=env, capture_output=True,
                             text=True, timeout=120, check=False)
    assert refused.returncode == 1
    assert "set BUDEVAL_API_TOKEN or BUDEVAL_API_TOKEN_FILE" in refused.stderr

    token_file = tmp_path / "token"
    token_file.write_text("external-secret-token\n")
    env = {**env, "BUDEVAL_API_TOKEN_FILE": str(token_file)}
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "budeval.cli.main", "serve"], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        api = f"http://127.0.0.1:{app_port}"

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(f"{api}/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=120, what="serve (external) ready")
        info = json.loads((Path(env["BUDEVAL_DATA_DIR"]) / "serve.json").read_text())
        assert info["sidecar"] == "external" and info["dapr_grpc_port"] == int(env["DAPR_GRPC_PORT"])
        assert not (Path(env["BUDEVAL_DATA_DIR"]) / "sidecar.db").exists()  # no embedded sidecar was started

        done = subprocess.run(
            [sys.executable, "-m", "budeval.cli.main", "submit", "-", "--wait", "--timeout", "150"],
            env={**env, "BUDEVAL_API_URL": api}, input=json.dumps(request("ext-1")), capture_output=True, text=True,
            timeout=200, check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr + log.read_text()[-3000:]
        assert "ext-1: completed" in done.stdout
        status = httpx.get(f"{api}/evals/ext-1", headers={"authorization": "Bearer external-secret-token"},
                           timeout=30)
        assert status.status_code == 200 and status.json()["status"] == "completed"
        assert "external-secret-token" not in log.read_text()
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
