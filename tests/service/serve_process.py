"""The real `budeval serve` as a subprocess, driven like a user would: one harness for the service and recovery tests.

The local backend runs tests/service/fake_opencompass.sh instead of OpenCompass: it copies a real OpenCompass output
folder (tests/fixtures), so the parser, store and archive see real files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "opencompass" / "qa_chat"
FAKE_PYTHON = Path(__file__).resolve().parent / "fake_opencompass.sh"


def serve_env(data_dir: Path, sidecar: str, **extra: str) -> dict[str, str]:
    """This process's environment without DAPR_/BUDEVAL_/FAKE_OC_ variables, plus a local embedded service."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "BUDEVAL_", "FAKE_OC_"))}
    env.update(
        BUDEVAL_DATA_DIR=str(data_dir),
        BUDEVAL_PORT="0",
        BUDEVAL_SIDECAR=sidecar,
        BUDEVAL_BACKEND="local",
        BUDEVAL_OPENCOMPASS_PYTHON=str(FAKE_PYTHON),
        BUDEVAL_POLL_INITIAL_S="1",
        BUDEVAL_POLL_MAX_S="2",
        FAKE_OC_FIXTURE=str(FIXTURE),
        # the fake runner's switches reach it like any operator-chosen variable; the tests' model paths live here
        BUDEVAL_RUN_ENV_PASSTHROUGH="FAKE_OC_*",
        BUDEVAL_MODELS_ROOT="/models",
    )
    env.update(extra)
    return env


class ServeProcess:
    """One data directory; ``start()`` may be called again after the process died (a restart)."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "serve.log"

    def start(self, **extra_env: str) -> ServeProcess:
        (self.data_dir / "serve.json").unlink(missing_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "budeval.cli.main", "serve"],
                env={**self.env, **extra_env},
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        return self

    def wait_ready(self, timeout: float = 180) -> ServeProcess:
        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            if not (self.data_dir / "serve.json").is_file():
                return False
            try:
                return httpx.get(self.info["api_url"] + "/readyz", timeout=5).status_code == 200
            except (httpx.HTTPError, ValueError):
                return False

        wait_until(ready, timeout=timeout, what="budeval serve ready")
        return self

    @property
    def info(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "serve.json").read_text()))

    @property
    def token(self) -> str:
        return (self.data_dir / "api-token").read_text().strip()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "budeval.cli.main", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def api(self, method: str, path: str) -> httpx.Response:
        return httpx.request(
            method, self.info["api_url"] + path, headers={"authorization": f"Bearer {self.token}"}, timeout=30
        )

    def events(self, eval_id: str | None = None) -> list[dict[str, Any]]:
        """CloudEvents on the events topic (the sidecar's topic log), of one evaluation or all."""
        url = f"http://127.0.0.1:{self.info['dapr_http_port']}/v1.0-alpha1/messages"
        answer = httpx.get(url, params={"topic": "budeval.events", "after": 0}, timeout=30)
        answer.raise_for_status()
        events = [m["event"] for m in answer.json()]
        return [e for e in events if eval_id is None or (e.get("data") or {}).get("eval_id") == eval_id]

    def wait_died(self) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=180)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
