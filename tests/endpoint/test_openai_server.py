"""scripts/openai_server.sh: a real OpenAI-compatible server serving SmolLM2-135M-Instruct on loopback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import OPENAI_SCRIPT, OpenAIServer

pytestmark = [pytest.mark.slow]


def test_answers_chat_completions_with_usage_and_counts_requests(openai_server: OpenAIServer) -> None:
    before = openai_server.requests()
    body = {
        "model": openai_server.model,
        "messages": [{"role": "user", "content": "What is the capital of France? Reply with one word."}],
        "max_tokens": 8,
        "temperature": 0,
    }
    answer = httpx.post(f"{openai_server.base_url}/chat/completions", json=body, timeout=300)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert "paris" in data["choices"][0]["message"]["content"].lower()
    usage = data["usage"]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert openai_server.requests() == before + 1
    # Pinned to its one model: another name is refused, and is no inference call.
    other = httpx.post(f"{openai_server.base_url}/chat/completions", json={**body, "model": "gpt-4"}, timeout=60)
    assert other.status_code == 400
    assert openai_server.requests() == before + 1


def test_status_env_and_start_again_reuse_the_running_server(openai_server: OpenAIServer) -> None:
    env = dict(os.environ, BUDEVAL_OPENAI_STATE=str(openai_server.state))
    run = [["bash", str(OPENAI_SCRIPT), verb] for verb in ("status", "env", "start")]
    assert subprocess.run(run[0], env=env, check=False, timeout=60).returncode == 0
    printed = subprocess.run(run[1], env=env, capture_output=True, text=True, check=True, timeout=60).stdout
    assert f"BUDEVAL_OPENAI_BASE_URL={openai_server.base_url}" in printed
    again = subprocess.run(run[2], env=env, capture_output=True, text=True, check=True, timeout=120)
    assert "already running" in again.stderr and f"BUDEVAL_OPENAI_PID={openai_server.pid}" in again.stdout
    assert httpx.get(openai_server.base_url.removesuffix("/v1") + "/health", timeout=10).status_code == 200
    # No hub and none of the caller's settings or secrets: the server's environment is the script's own.
    environ = Path(f"/proc/{openai_server.pid}/environ").read_bytes().split(b"\0")
    assert b"HF_HUB_OFFLINE=1" in environ and not any(e.startswith(b"BUDEVAL_") for e in environ)
