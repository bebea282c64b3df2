"""Run specs for the Kubernetes tests, rendered by the real OpenCompass config renderer."""

from __future__ import annotations

from typing import Any

from budeval.backends.base import RunSpec
from budeval.engine.render import render_config
from budeval.schemas.request import EvalRequest

SECRET_VALUE = "sk-budeval-test-0123456789abcdefSECRET"


def hf_spec(eval_id: str, run_id: str = "r0", *, timeout_s: int = 3600, **resources: Any) -> RunSpec:
    request = EvalRequest.model_validate(
        {
            "eval_id": eval_id,
            "model": {"name": "smollm2", "source": {"type": "huggingface", "path": "/models/SmolLM2-135M-Instruct"}},
            "datasets": ["tiny_qa"],
            "resources": resources,
            "timeout_s": max(60, timeout_s),
        }
    )
    return RunSpec(
        eval_id=eval_id,
        run_id=run_id,
        config_text=render_config(request, ["tiny_qa"]),
        model=request.model,
        datasets=["tiny_qa"],
        resources=request.resources,
        timeout_s=timeout_s,
    )


def endpoint_spec(eval_id: str, run_id: str = "r0", *, secret: str = "llm-api", key: str = "api-key") -> RunSpec:
    request = EvalRequest.model_validate(
        {
            "eval_id": eval_id,
            "model": {
                "name": "gpt-endpoint",
                "source": {
                    "type": "openai",
                    "base_url": "https://llm.example/v1",
                    "model": "gpt-test",
                    "api_key_secret": {"name": secret, "key": key},
                },
            },
            "datasets": ["tiny_qa"],
            "resources": {"gpus": 0, "cpu": "2", "memory": "4Gi"},
        }
    )
    return RunSpec(
        eval_id=eval_id,
        run_id=run_id,
        config_text=render_config(request, ["tiny_qa"]),
        model=request.model,
        datasets=["tiny_qa"],
        resources=request.resources,
        timeout_s=request.timeout_s,
    )
