"""Stock OpenCompass LLM-judge datasets (``*_llmjudge_gen``) judged by the request's judge (docs/usage.md "Judges",
docs/opencompass.md "LLM-judge datasets"): the rendered config loaded by OpenCompass's own ``Config.fromfile`` in its
venv has the judge in every evaluator's ``judge_cfg``; a request without a judge is rejected at admission; the judge
is part of the identity only when a judged dataset is in the request. No inference."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from budeval.config import Settings
from budeval.engine.catalog import STOCK, needs_judge, resolve_datasets, stock_table
from budeval.engine.digests import DigestCache
from budeval.engine.identity import compute_identity
from budeval.engine.render import render_config
from budeval.errors import ValidationError
from budeval.schemas.request import EvalRequest
from budeval.service.admission import check_catalog

OPENCOMPASS_PYTHON = (
    Path(os.environ.get("BUDEVAL_CACHE") or Path.home() / ".cache" / "budeval") / "opencompass-venv" / "bin" / "python"
)
ENDPOINT_JUDGE = {"name": "judge", "source": {"type": "openai", "base_url": "http://judge.example:8000/v1",
                                              "model": "smol", "api_key_secret": {"name": "judge-key"}}}
HF_JUDGE = {"name": "hfjudge", "source": {"type": "huggingface", "path": "org/judge", "revision": "main"}}


def req(datasets: list[Any] | None = None, judge: dict[str, Any] | None = None, **extra: Any) -> EvalRequest:
    body: dict[str, Any] = {
        "eval_id": "sj",
        "model": {"name": "m", "source": {"type": "huggingface", "path": "org/m"}},
        "datasets": datasets if datasets is not None else ["aime2024_llmjudge_gen", "tiny_qa"],
        "resources": {"gpus": 0},
        **extra,
    }
    if judge is not None:
        body["judge"] = {"model": judge}
    return EvalRequest.model_validate(body)


def test_which_stock_datasets_need_a_judge_is_what_opencompass_config_says() -> None:
    table = stock_table()["0.5.4"]
    assert {n for n in STOCK if needs_judge(n)} == {n for n, e in table.items() if e["judge"]}
    assert needs_judge("aime2024_llmjudge_gen") and needs_judge("math_500_llmjudge_gen")
    assert not needs_judge("gsm8k_gen") and not needs_judge("tiny_qa") and not needs_judge("nope")


def test_a_stock_llm_judge_dataset_without_a_judge_is_rejected_at_admission_naming_it() -> None:
    request = req(["tiny_qa", "math_500_llmjudge_gen"])
    rejection = check_catalog(request, {})
    assert rejection is not None and rejection.field == "judge"
    assert "math_500_llmjudge_gen" in rejection.reason and "give a 'judge' model" in rejection.reason
    # Through a suite too, and the renderer refuses as well (never an empty judge_cfg).
    suite_request = EvalRequest.model_validate({"eval_id": "sj", "suite": "judged",
                                                "model": {"name": "m", "source": {"type": "huggingface",
                                                                                  "path": "org/m"}}})
    with pytest.raises(ValidationError, match="aime2024_llmjudge_gen"):
        resolve_datasets(suite_request, {"judged": ["tiny_qa", "aime2024_llmjudge_gen"]})
    with pytest.raises(ValidationError, match="names no judge"):
        render_config(request, ["math_500_llmjudge_gen"])
    assert check_catalog(req(["tiny_qa", "gsm8k_gen"]), {}) is None
    assert check_catalog(req(judge=HF_JUDGE), {}) is None


def test_subjective_datasets_are_rejected_with_the_reason() -> None:
    rejection = check_catalog(req(["alignbench_v1_1_judgeby_critiquellm"], judge=HF_JUDGE), {})
    assert rejection is not None and "subjective" in rejection.reason and "docs/opencompass.md" in rejection.reason
    plain = check_catalog(req(["no_such_set"], judge=HF_JUDGE), {})
    assert plain is not None and "subjective" not in plain.reason


LOAD = """
import json, sys
from mmengine.config import Config
cfg = Config.fromfile(sys.argv[1], format_python_code=False)
out = {}
for d in cfg['datasets']:
    ev = d.get('eval_cfg', {}).get('evaluator', {})
    judge = {k: str(v) for k, v in (ev.get('judge_cfg') or {}).items()}
    out[d['abbr']] = {'evaluator': str(ev.get('type')), 'judge_cfg': judge}
print(json.dumps(out))
"""


@pytest.mark.opencompass
@pytest.mark.usefixtures("opencompass_env")
@pytest.mark.parametrize("judge", [ENDPOINT_JUDGE, HF_JUDGE], ids=["endpoint", "huggingface"])
def test_opencompass_loads_the_stock_config_with_the_request_judge(tmp_path: Path, judge: dict[str, Any]) -> None:
    names = ["aime2024_llmjudge_gen", "gsm8k_gen", "tiny_qa"]
    request = req(names, judge)
    text = render_config(request, names)
    assert "judge-key" not in text  # the key is read from the environment (key='ENV'), never written
    config = tmp_path / "config.py"
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(OPENCOMPASS_PYTHON), "-c", LOAD, str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    judged = loaded["aime2024"]
    assert "GenericLLMEvaluator" in judged["evaluator"]
    cfg = judged["judge_cfg"]
    assert cfg["abbr"] == judge["name"]
    if judge is ENDPOINT_JUDGE:
        assert "OpenAISDK" in cfg["type"] and "Budeval" not in cfg["type"]
        assert cfg["openai_api_base"] == ENDPOINT_JUDGE["source"]["base_url"] and cfg["key"] == "ENV"
        assert cfg["path"] == "smol"
    else:
        assert "HuggingFacewithChatTemplate" in cfg["type"] and cfg["path"] == "org/judge"
    # Datasets that take no judge are unchanged.
    assert "judge_cfg" not in str(loaded["gsm8k"]) or loaded["gsm8k"]["judge_cfg"] == {}
    assert loaded["tiny_qa"]["judge_cfg"] == {}


def _identity(request: EvalRequest, tmp_path: Path) -> Any:
    return compute_identity(request, {}, Settings(data_dir=tmp_path / "data"), digests=DigestCache(tmp_path / "d"),
                            hub=lambda repo, rev: "c" * 40)


def test_the_judge_is_the_work_only_when_a_stock_dataset_is_judged(tmp_path: Path) -> None:
    judged = _identity(req(judge=HF_JUDGE), tmp_path)
    assert judged.components["judge"]["model"]["id"] == "org/judge"
    other = {**HF_JUDGE, "source": {**HF_JUDGE["source"], "path": "org/other-judge"}}
    assert _identity(req(judge=other), tmp_path).hash != judged.hash
    # Without a judged dataset there is no judge in the work, and a judge named for none is refused.
    plain = ["gsm8k_gen", "tiny_qa"]
    assert "judge" not in _identity(req(plain), tmp_path).components
    with pytest.raises(ValidationError, match="no dataset is scored 'judge'"):
        _identity(req(plain, HF_JUDGE), tmp_path)


def test_with_judge_fills_nested_judge_cfgs_and_leaves_the_stock_config_alone() -> None:
    import importlib.util

    from budeval.engine.render import JUDGED_MODULE, PLUGIN_DIR

    spec = importlib.util.spec_from_file_location(JUDGED_MODULE, PLUGIN_DIR / f"{JUDGED_MODULE}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stock = [{"abbr": "x", "eval_cfg": {"evaluator": {"type": "Cascade", "rule_evaluator": {"type": "R"},
                                                      "llm_evaluator": {"type": "G", "judge_cfg": {}}}}},
             {"abbr": "y", "eval_cfg": {"evaluator": {"type": "Acc"}}}]
    judge = {"type": "OpenAISDK", "abbr": "judge"}
    out = module.budeval_with_judge(stock, judge)
    assert out[0]["eval_cfg"]["evaluator"]["llm_evaluator"]["judge_cfg"] == judge
    assert out[1] == stock[1]
    assert stock[0]["eval_cfg"]["evaluator"]["llm_evaluator"]["judge_cfg"] == {}
