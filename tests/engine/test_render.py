"""The rendered OpenCompass config: deterministic, valid Python, no secret, each dataset kind rendered as decided."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from budeval.config import Settings
from budeval.engine import render
from budeval.engine.catalog import BUNDLED
from budeval.engine.render import PLUGIN_DIR, config_hash, render_config
from budeval.errors import ValidationError
from budeval.schemas.request import CustomDataset, EvalRequest
from budeval.schemas.scoring import JUDGE_SCORING, SCORINGS

HF = {"type": "huggingface", "path": "/models/smol", "revision": "abc123"}
API = {
    "type": "openai",
    "base_url": "http://10.0.0.1:8000/v1/",
    "model": "served-model",
    "api_key_secret": {"name": "llm-keys", "key": "token"},
}


def make_request(source: dict[str, Any] | None = None, **kw: Any) -> EvalRequest:
    base: dict[str, Any] = {
        "eval_id": "e1",
        "model": {"name": "my-model", "source": source or HF},
        "datasets": ["tiny_qa"],
    }
    base.update(kw)
    return EvalRequest.model_validate(base)


def model_call(text: str) -> ast.Call:
    """The first dict(...) inside ``models = [...]``."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "models":
            assert isinstance(node.value, ast.List)
            call = node.value.elts[0]
            assert isinstance(call, ast.Call)
            return call
    raise AssertionError("no models assignment")


def kwargs(call: ast.Call) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kw in call.keywords:
        assert kw.arg is not None
        out[kw.arg] = ast.unparse(kw.value) if not isinstance(kw.value, ast.Constant) else kw.value.value
    return out


def test_same_input_same_text_and_hash() -> None:
    a = render_config(make_request(), ["tiny_qa"])
    b = render_config(make_request(), ["tiny_qa"])
    assert a == b
    assert config_hash(a) == config_hash(b) == hashlib.sha256(a.encode()).hexdigest()
    assert len(config_hash(a)) == 64


def test_changes_that_matter_change_the_text() -> None:
    base = render_config(make_request(), ["tiny_qa"])
    assert render_config(make_request(generation={"max_out_len": 7}), ["tiny_qa"]) != base
    assert render_config(make_request(), ["tiny_mcq"]) != base


def test_hf_chat_model_rendering() -> None:
    text = render_config(make_request(generation={"max_out_len": 32, "batch_size": 2}), ["tiny_qa"])
    ast.parse(text)
    assert "from opencompass.models import HuggingFacewithChatTemplate" in text
    kw = kwargs(model_call(text))
    assert kw["type"] == "HuggingFacewithChatTemplate"
    assert kw["abbr"] == "my-model"
    assert kw["path"] == "/models/smol"
    assert kw["max_out_len"] == 32 and kw["batch_size"] == 2
    assert "revision='abc123'" in kw["model_kwargs"]
    assert "trust_remote_code=False" in kw["model_kwargs"]
    assert kw["generation_kwargs"] == "dict(do_sample=False)"
    assert kw["run_cfg"] == "dict(num_gpus=1)"


def test_hf_base_model_and_sampling() -> None:
    src = dict(HF, mode="base")
    text = render_config(make_request(src, generation={"temperature": 0.7}, resources={"gpus": 0}), ["tiny_qa"])
    kw = kwargs(model_call(text))
    assert kw["type"] == "HuggingFaceBaseModel"
    assert kw["generation_kwargs"] == "dict(do_sample=True, temperature=0.7)"
    assert kw["run_cfg"] == "dict(num_gpus=0)"


def test_endpoint_model_reads_key_from_environment_and_never_holds_it() -> None:
    text = render_config(make_request(API), ["tiny_qa"])
    kw = kwargs(model_call(text))
    assert kw["type"] == "BudevalOpenAISDK"
    assert kw["key"] == "ENV"
    assert kw["openai_api_base"] == "http://10.0.0.1:8000/v1/"
    assert kw["path"] == "served-model"
    # Only the *reference* is in the request; the secret's name/key do not belong in the config either (budeval's
    # embedded plugin sources aside: the usage model counts "tokens").
    rendered = "\n".join(line for line in text.splitlines() if not line.startswith("_budeval_usage_source = "))
    assert "llm-keys" not in rendered and "token" not in rendered


def test_keyless_endpoint_uses_placeholder() -> None:
    src = {k: v for k, v in API.items() if k != "api_key_secret"}
    assert kwargs(model_call(render_config(make_request(src), ["tiny_qa"])))["key"] == "EMPTY"


def test_bundled_datasets_travel_inside_the_config() -> None:
    """No path into the service's site-packages: the runner (another image, another pod) has none of it."""
    text = render_config(make_request(), ["tiny_qa", "tiny_mcq"])
    assert str(BUNDLED["tiny_qa"].path.parent) not in text
    assert "site-packages" not in text
    assert "data_type='mcq'" in text
    assert "read_base" not in text
    # Executing the config (as OpenCompass does) writes the bundled text next to the scoring module.
    # Without OpenCompass here: its two imports are replaced by stand-ins.
    body = "\n".join(line for line in text.splitlines() if not line.startswith(("from opencompass", "from budeval_")))
    scope: dict[str, object] = {"HuggingFacewithChatTemplate": dict, "BudevalEvaluator": dict}
    saved_path, saved_env = list(sys.path), os.environ.get("PYTHONPATH")
    try:
        exec(compile(body, "config.py", "exec"), scope)
    finally:
        sys.path[:] = saved_path
        if saved_env is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_env
    datasets = scope["datasets"]
    assert isinstance(datasets, list)
    by_abbr = {d["abbr"]: Path(d["path"]) for d in datasets}
    assert by_abbr["tiny_qa"].read_text(encoding="utf-8") == BUNDLED["tiny_qa"].path.read_text(encoding="utf-8")
    assert by_abbr["tiny_mcq"].read_text(encoding="utf-8") == BUNDLED["tiny_mcq"].path.read_text(encoding="utf-8")
    assert by_abbr["tiny_qa"].parent == Path(str(scope["_budeval_plugin"]))


def test_stock_datasets_via_read_base_with_aliases() -> None:
    text = render_config(make_request(datasets=["gsm8k_gen", "mmlu_gen"]), ["gsm8k_gen", "mmlu_gen"])
    ast.parse(text)
    assert "from mmengine.config import read_base" in text
    assert "from opencompass.configs.datasets.gsm8k.gsm8k_gen import gsm8k_datasets as _stock_0" in text
    assert "from opencompass.configs.datasets.mmlu.mmlu_gen import mmlu_datasets as _stock_1" in text
    assert text.index("*_stock_0") < text.index("*_stock_1")


def test_variants_of_one_benchmark_in_one_run_are_rejected() -> None:
    with pytest.raises(ValidationError, match="variants"):
        render_config(make_request(datasets=["mmlu_gen", "mmlu_ppl"]), ["mmlu_gen", "mmlu_ppl"])


def test_custom_dataset_path_is_a_literal_not_code() -> None:
    evil = CustomDataset(name="evil", path="/data/x'); import os; os.system('true'); ('.jsonl")
    text = render_config(make_request(datasets=[evil.model_dump()]), [evil])
    tree = ast.parse(text)
    # Still exactly the rendered assignments (the scoring plugin's path and PYTHONPATH, models, datasets).
    assigns = [n for n in tree.body if isinstance(n, ast.Assign)]
    names = [getattr(a.targets[0], "id", "") for a in assigns]
    assert names == ["_budeval_scoring_source", "_budeval_plugin", "", "models", "datasets"]
    assert "os.system" not in [ast.unparse(n) for n in tree.body if isinstance(n, ast.Expr)]


def test_unknown_or_empty_or_duplicate_datasets_are_rejected() -> None:
    with pytest.raises(ValidationError):
        render_config(make_request(), ["no_such"])
    with pytest.raises(ValidationError):
        render_config(make_request(), [])
    with pytest.raises(ValidationError):
        render_config(make_request(), ["tiny_qa", "tiny_qa"])


def test_endpoint_calls_come_from_settings_and_the_request_overrides_them() -> None:
    """Rate, parallel requests, retries (OpenCompass's ``retry`` counts attempts) and the timeout of each request."""
    built_in = kwargs(model_call(render_config(make_request(API), ["tiny_qa"])))
    assert (built_in["query_per_second"], built_in["max_workers"], built_in["retry"], built_in["timeout"]) == (
        4, 4, 3, 300.0
    )
    settings = Settings(endpoint_query_per_second=9, endpoint_max_parallel=2, endpoint_retries=0,
                        endpoint_timeout_s=7.5)
    operator = kwargs(model_call(render_config(make_request(API), ["tiny_qa"], settings)))
    assert (operator["query_per_second"], operator["max_workers"], operator["retry"], operator["timeout"]) == (
        9, 2, 1, 7.5
    )
    own = dict(API, query_per_second=1, max_parallel=8, retries=5, timeout_s=60)
    requested = kwargs(model_call(render_config(make_request(own), ["tiny_qa"], settings)))
    assert (requested["query_per_second"], requested["max_workers"], requested["retry"], requested["timeout"]) == (
        1, 8, 6, 60.0
    )
    with pytest.raises(PydanticValidationError):
        make_request(dict(API, max_parallel=0))


def test_endpoint_model_is_budevals_usage_recording_subclass_carried_in_the_config() -> None:
    text = render_config(make_request(API), ["gsm8k_gen"])  # a stock dataset: no scoring module, still the model
    assert "\nfrom opencompass.models import" not in text  # the model comes from budeval_usage
    assert "from budeval_usage import BudevalOpenAISDK" in text and "budeval_scoring" not in text
    embedded = next(
        ast.literal_eval(n.value)
        for n in ast.parse(text).body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "_budeval_usage_source"
    )
    assert embedded == (PLUGIN_DIR / "budeval_usage.py").read_text(encoding="utf-8")
    both = render_config(make_request(API), ["tiny_qa"])
    assert "from budeval_scoring import BudevalEvaluator" in both and "from budeval_usage import" in both


def test_endpoint_tokenizer_path_is_rendered_when_given() -> None:
    text = render_config(make_request(dict(API, tokenizer_path="/models/tok")), ["tiny_qa"])
    assert kwargs(model_call(text))["tokenizer_path"] == "/models/tok"
    assert "tokenizer_path" not in render_config(make_request(API), ["tiny_qa"])


# -- scoring (docs/opencompass.md "Scoring") -------------------------------------------------------------------------
def dataset_calls(text: str) -> dict[str, dict[str, Any]]:
    """abbr -> keyword arguments of each ``dict(...)`` in ``datasets = [...]`` (stock entries are starred: skipped)."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "datasets":
            assert isinstance(node.value, ast.List)
            calls = [kwargs(c) for c in node.value.elts if isinstance(c, ast.Call)]
            return {c["abbr"]: c for c in calls}
    raise AssertionError("no datasets assignment")


def test_bundled_scoring_is_visible_in_the_config() -> None:
    calls = dataset_calls(render_config(make_request(), ["tiny_qa", "tiny_mcq"]))
    assert calls["tiny_qa"]["evaluator"] == "BudevalEvaluator"
    assert calls["tiny_qa"]["evaluator_kwargs"] == "dict(scoring='contains')"
    assert calls["tiny_mcq"]["evaluator_kwargs"] == "dict(scoring='option')"


def test_changing_a_bundled_scoring_changes_the_config_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    before = render_config(make_request(), ["tiny_qa"])
    monkeypatch.setitem(BUNDLED, "tiny_qa", dataclasses.replace(BUNDLED["tiny_qa"], scoring="exact"))
    after = render_config(make_request(), ["tiny_qa"])
    assert "scoring='exact'" in after
    assert config_hash(before) != config_hash(after)


def test_the_scoring_code_travels_in_the_config_and_its_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    text = render_config(make_request(), ["tiny_qa"])
    embedded = next(
        ast.literal_eval(n.value)
        for n in ast.parse(text).body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "_budeval_scoring_source"
    )
    assert embedded == (PLUGIN_DIR / "budeval_scoring.py").read_text(encoding="utf-8")
    monkeypatch.setattr(render, "scoring_source", lambda: embedded + "\n# changed\n")
    assert config_hash(render_config(make_request(), ["tiny_qa"])) != config_hash(text)


def test_scoring_vocabulary_of_schema_and_evaluator_agree() -> None:
    tree = ast.parse((PLUGIN_DIR / "budeval_scoring.py").read_text())
    names = next(
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "SCORINGS"
    )
    # 'judge' is no rule of BudevalEvaluator: OpenCompass's GenericLLMEvaluator scores it (tests/engine/test_judge.py)
    assert set(names) == {s for kind in SCORINGS.values() for s in kind} - {JUDGE_SCORING}


def test_plugin_is_put_on_the_path_only_when_a_dataset_uses_it() -> None:
    text = render_config(make_request(), ["tiny_qa"])
    assert "_budeval_plugin = __import__('tempfile').mkdtemp(prefix='budeval-scoring-')" in text
    assert "from budeval_scoring import BudevalEvaluator" in text
    assert str(PLUGIN_DIR) not in text  # nothing of budeval's installation is needed where OpenCompass runs
    assert "['PYTHONPATH']" in text  # OpenCompass's evaluation tasks are child processes
    stock = render_config(make_request(datasets=["gsm8k_gen"]), ["gsm8k_gen"])
    assert "budeval" not in stock.split("\n", 2)[2]  # beyond the header comment: the stock evaluator, untouched
    assert "evaluator" not in stock


def test_custom_scoring_and_regex_pattern_are_literals() -> None:
    pattern = "(x)'\\); __import__\\('os'\\).system\\('true'\\); print\\('\""  # a valid regex full of quotes
    custom = CustomDataset(name="mine", path="/data/mine.jsonl", scoring=f"regex:{pattern}")
    text = render_config(make_request(datasets=[custom.model_dump()]), [custom])
    tree = ast.parse(text)
    assert "system" not in "".join(ast.unparse(n) for n in tree.body if isinstance(n, ast.Expr))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "dict"]
    call = next(n for n in calls if any(k.arg == "pattern" for k in n.keywords))
    assert {k.arg: ast.literal_eval(k.value) for k in call.keywords} == {
        "pattern": pattern,
        "scoring": "regex",
    }
    exact = CustomDataset(name="mine", path="/data/mine.jsonl", scoring="exact")
    assert "scoring='exact'" in render_config(make_request(datasets=[exact.model_dump()]), [exact])
