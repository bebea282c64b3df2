"""Stock LLM-judge datasets with the request's judge (runs inside OpenCompass 0.5.4; stdlib only).

A rendered config (budeval/engine/render.py) imports :func:`budeval_with_judge` and calls it at config load on each
stock dataset list whose evaluator takes a judge model (``judge_cfg`` left empty by OpenCompass's
``*_llmjudge_gen`` configs, ``opencompass/configs/datasets/*/*_llmjudge_gen*.py``).
"""

from __future__ import annotations

from typing import Any


def budeval_with_judge(datasets: Any, judge: dict[str, Any]) -> list[dict[str, Any]]:
    """Copies of the dataset configs ``datasets`` (a list of dicts) in which every ``judge_cfg`` found in an
    ``eval_cfg`` (``GenericLLMEvaluator``'s, also when nested, e.g. in a ``CascadeEvaluator``'s ``llm_evaluator``)
    is a copy of ``judge`` (a model config dict). The stock configs themselves are not changed."""

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: fill(v) for k, v in value.items()}
            if "judge_cfg" in value:
                out["judge_cfg"] = dict(judge)
            return out
        if isinstance(value, (list, tuple)):
            return type(value)(fill(v) for v in value)
        return value

    return [{**d, "eval_cfg": fill(d.get("eval_cfg", {}))} for d in datasets]
