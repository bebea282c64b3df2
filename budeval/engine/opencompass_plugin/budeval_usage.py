"""Token usage of endpoint models, recorded by OpenCompass 0.5.4 (imports only the standard library and OpenCompass).

budeval never imports this module: budeval/engine/render.py embeds its source in the config of every run of an
endpoint (``openai``) model and names :class:`BudevalOpenAISDK` as the model's type. OpenCompass's own ``OpenAISDK``
discards the ``usage`` of each answer (opencompass/models/openai_api.py, ``_generate``); this subclass keeps its
behaviour (retries, rate limit, threads) and appends one JSON line per request to
``$BUDEVAL_USAGE_DIR/usage-<pid>.jsonl`` (the run's ``.budeval/usage/``, set by both backends' wrappers; the working
directory when unset)::

    {"ok": true, "prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43}
    {"ok": false, "error": "APIConnectionError"}

``prompt_tokens``/``completion_tokens`` are present only when the endpoint reported them. budeval sums the lines of
a run (budeval/engine/results/usage.py).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from opencompass.models import OpenAISDK
from opencompass.registry import MODELS

USAGE_DIR_ENV = "BUDEVAL_USAGE_DIR"
_lock = threading.Lock()


def _record(line: dict[str, Any]) -> None:
    """Append one line; never raises (usage is bookkeeping: it must not fail an evaluation)."""
    try:
        folder = os.environ.get(USAGE_DIR_ENV) or "."
        os.makedirs(folder, exist_ok=True)
        text = json.dumps(line, sort_keys=True) + "\n"
        with _lock, open(os.path.join(folder, f"usage-{os.getpid()}.jsonl"), "a", encoding="utf-8") as f:
            f.write(text)
    except Exception:  # noqa: S110
        pass


def _usage_line(response: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"ok": True}
    usage = getattr(response, "usage", None)
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = getattr(usage, name, None)
        if isinstance(value, int) and value >= 0:
            line[name] = value
    return line


@MODELS.register_module(force=True)
class BudevalOpenAISDK(OpenAISDK):  # type: ignore[misc]
    """OpenCompass's ``OpenAISDK`` that records each request's outcome and token usage (see the module docstring)."""

    def _create_fresh_client(self) -> Any:
        client = super()._create_fresh_client()
        completions = client.chat.completions  # a cached property: the same object every time
        create = completions.create

        def recorded_create(*args: Any, **kwargs: Any) -> Any:
            try:
                response = create(*args, **kwargs)
            except Exception as exc:
                _record({"ok": False, "error": type(exc).__name__})
                raise
            _record(_usage_line(response))
            return response

        completions.create = recorded_create
        return client
