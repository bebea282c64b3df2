"""Judges without a model: the request shape, the rendered OpenCompass config, the identity, the credential policy
and the re-judging request (docs/usage.md "Judges"). The real judge, end to end: tests/e2e/test_judge_e2e.py; the
plugin's judge code inside OpenCompass: tests/engine/test_judge_plugin.py."""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError as SchemaError

from budeval.backends.base import RunSpec
from budeval.cli.rejudge_command import default_new_id, read_judge, rejudge_request
from budeval.config import Settings
from budeval.engine import judging
from budeval.engine.digests import DigestCache
from budeval.engine.identity import compute_identity
from budeval.engine.render import JUDGE_VARIABLE, render_config
from budeval.errors import PolicyError, ValidationError
from budeval.policy.credentials import EndpointPolicy, StaticRegistry
from budeval.schemas.request import EvalRequest
from budeval.service.intake import Rejection, parse_request
from budeval.workflow.provenance import judge_provenance

ENDPOINT_JUDGE = {"name": "judge", "source": {"type": "openai", "base_url": "http://judge.example:8000/v1",
                                              "model": "smol"}}


def judged(tmp_path: Path | None = None, **extra: Any) -> dict[str, Any]:
    path = str(tmp_path / "qa.jsonl") if tmp_path is not None else "/data/qa.jsonl"
    return {
        "eval_id": "e1",
        "model": {"name": "m", "source": {"type": "huggingface", "path": "org/m"}},
        "datasets": ["tiny_qa", {"name": "jq", "path": path, "scoring": "judge"}],
        "judge": {"model": ENDPOINT_JUDGE},
        **extra,
    }


# -- request ---------------------------------------------------------------------------------------------------------
def test_a_judged_dataset_needs_a_judge_and_rejudging_needs_one_too() -> None:
    no_judge = {k: v for k, v in judged().items() if k != "judge"}
    rejection = parse_request(json.dumps(no_judge))
    assert isinstance(rejection, Rejection) and "give a 'judge' model" in rejection.reason
    with pytest.raises(SchemaError, match="'rejudge_of' needs a 'judge'"):
        EvalRequest.model_validate({**no_judge, "datasets": ["tiny_qa"], "rejudge_of": "e0"})
    with pytest.raises(SchemaError, match="names this evaluation itself"):
        EvalRequest.model_validate(judged(rejudge_of="e1"))
    with pytest.raises(SchemaError, match="must contain \\{prediction\\}"):
        EvalRequest.model_validate(judged(judge={"model": ENDPOINT_JUDGE, "template": "Is {answer} right?"}))
    with pytest.raises(SchemaError, match="does not apply to mcq"):
        EvalRequest.model_validate(judged(datasets=[{"name": "x", "path": "/x.jsonl", "kind": "mcq",
                                                     "scoring": "judge"}]))


# -- rendering -------------------------------------------------------------------------------------------------------
def _assignments(text: str) -> dict[str, ast.expr]:
    return {getattr(n.targets[0], "id", ""): n.value for n in ast.parse(text).body if isinstance(n, ast.Assign)}


def test_a_judged_dataset_renders_generic_llm_evaluator_with_the_judge_and_budevals_postprocessor() -> None:
    request = EvalRequest.model_validate(judged())
    text = render_config(request, request.datasets or [])
    values = _assignments(text)
    judge = values[JUDGE_VARIABLE]
    assert isinstance(judge, ast.Call) and ast.unparse(judge).startswith("dict(type=OpenAISDK")  # a dict, no tuple
    assert "openai_api_base='http://judge.example:8000/v1'" in ast.unparse(judge)
    assert "key='EMPTY'" in ast.unparse(judge) and "max_out_len=16" in ast.unparse(judge)
    datasets = values["datasets"]
    assert isinstance(datasets, ast.List)
    rule, by_judge = (ast.unparse(d) for d in datasets.elts)
    assert "evaluator=BudevalEvaluator" in rule and "GenericLLMEvaluator" not in rule
    assert "evaluator=GenericLLMEvaluator" in by_judge
    assert f"judge_cfg={JUDGE_VARIABLE}" in by_judge
    assert "dict_postprocessor=dict(type=budeval_judge_postprocess)" in by_judge
    assert repr(judging.DEFAULT_TEMPLATE) in by_judge or judging.DEFAULT_TEMPLATE in ast.literal_eval(
        next(k.value for k in ast.walk(datasets) if isinstance(k, ast.keyword) and k.arg == "prompt")  # type: ignore[arg-type]
    )
    assert "from budeval_scoring import BudevalEvaluator, budeval_judge_postprocess" in text
    # The judge's own template replaces the default, and is in the config (so in its hash).
    own = EvalRequest.model_validate(judged(judge={"model": ENDPOINT_JUDGE, "template": "Q {question} P {prediction}"}))
    assert "'Q {question} P {prediction}'" in render_config(own, own.datasets or [])
    # A run without the judged dataset (per-dataset split) does not render the judge at all.
    assert JUDGE_VARIABLE not in render_config(request, ["tiny_qa"])


def test_a_judge_key_is_read_from_the_environment_never_written() -> None:
    keyed = {**ENDPOINT_JUDGE, "source": {**ENDPOINT_JUDGE["source"], "api_key_secret": {"name": "judge-key"}}}
    request = EvalRequest.model_validate(judged(judge={"model": keyed}))
    text = render_config(request, request.datasets or [])
    assert "key='ENV'" in ast.unparse(_assignments(text)[JUDGE_VARIABLE])
    spec = RunSpec(eval_id="e1", run_id="r0", config_text=text, model=request.model, datasets=["jq"],
                   judge=request.judge.model if request.judge else None)
    source = spec.keyed_source()
    assert source is not None and source.api_key_secret is not None and source.api_key_secret.name == "judge-key"


def test_a_rejudging_request_replays_the_stored_predictions_instead_of_the_model() -> None:
    request = EvalRequest.model_validate(judged(rejudge_of="e0"))
    with pytest.raises(ValidationError, match="needs its stored predictions"):
        render_config(request, request.datasets or [])
    text = render_config(request, request.datasets or [], replay={"HUMAN: q?": ["a", "b"]})
    models = _assignments(text)["models"]
    assert isinstance(models, ast.List) and len(models.elts) == 1
    model = ast.unparse(models.elts[0])
    assert model.startswith("dict(type=BudevalReplay, abbr='m'")
    encoded = ast.literal_eval(model.split("answers_b64=", 1)[1].split(",", 1)[0])
    assert json.loads(base64.b64decode(encoded)) == {"HUMAN: q?": ["a", "b"]}
    assert "HuggingFacewithChatTemplate" not in text  # the evaluated model is not loaded at all
    assert "BudevalReplay" in text.split("from budeval_scoring import", 1)[1].splitlines()[0]


# -- identity and provenance -----------------------------------------------------------------------------------------
def _identity(request: EvalRequest, tmp_path: Path) -> Any:
    return compute_identity(request, {}, Settings(data_dir=tmp_path / "data"), digests=DigestCache(tmp_path / "d"),
                            hub=lambda repo, rev: "c" * 40)


def test_the_judge_model_commit_template_and_settings_are_the_work(tmp_path: Path) -> None:
    (tmp_path / "qa.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    hub_judge = {"name": "judge", "source": {"type": "huggingface", "path": "org/judge", "revision": "main"}}
    base = EvalRequest.model_validate(judged(tmp_path, judge={"model": hub_judge}))
    first = _identity(base, tmp_path)
    assert first.reusable
    component = first.components["judge"]
    assert component["model"] == {"mode": "chat", "kind": "hub", "id": "org/judge", "commit": "c" * 40}
    assert component["template_sha256"] == judging.template_hash(base.judge)  # type: ignore[arg-type]
    changes = [
        {"model": hub_judge, "template": "Grade {prediction} against {answer}"},
        {"model": hub_judge, "max_out_len": 8},
        {"model": {**hub_judge, "source": {**hub_judge["source"], "path": "org/other-judge"}}},
    ]
    hashes = {_identity(EvalRequest.model_validate(judged(tmp_path, judge=j)), tmp_path).hash for j in changes}
    assert first.hash not in hashes and len(hashes) == len(changes)
    # The judge's display name is not the work; re-judging another evaluation's predictions is.
    renamed = EvalRequest.model_validate(judged(tmp_path, judge={"model": {**hub_judge, "name": "other-name"}}))
    assert _identity(renamed, tmp_path).components["judge"]["name"] == "other-name"
    rejudged = EvalRequest.model_validate(judged(tmp_path, judge={"model": hub_judge}, rejudge_of="e0"))
    assert _identity(rejudged, tmp_path).hash != first.hash
    # An endpoint judge cannot be pinned: never reused (as an endpoint model).
    endpoint = _identity(EvalRequest.model_validate(judged(tmp_path)), tmp_path)
    assert endpoint.hash is None and any("judge.example" in why for why in endpoint.unresolved)
    # The judge goes to provenance and the evaluation row's label.
    prov = judge_provenance(base, component)
    assert prov["commit"] == "c" * 40 and prov["template_sha256"] == component["template_sha256"]
    assert prov["label"] == f"judge@{'c' * 40}/t:{component['template_sha256'][:12]}"


def test_requests_without_a_judge_keep_their_identity(tmp_path: Path) -> None:
    (tmp_path / "qa.jsonl").write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    request = EvalRequest.model_validate(judged(tmp_path))
    without = EvalRequest.model_validate({k: v for k, v in judged(tmp_path, datasets=["tiny_qa"]).items()
                                          if k != "judge"})
    assert "judge" not in _identity(without, tmp_path).components
    assert "judge" in _identity(request, tmp_path).components  # it judges a dataset, so part of the work


# -- credential policy -----------------------------------------------------------------------------------------------
def test_an_endpoint_judge_follows_the_credential_policy() -> None:
    policy = EndpointPolicy(StaticRegistry({"judge-key": ["judge.example"], "other": ["*"]}),
                            resolver=lambda host: ["203.0.113.9"])

    def with_judge(source: dict[str, Any], model: dict[str, Any] | None = None) -> EvalRequest:
        extra = {"model": model} if model else {}
        return EvalRequest.model_validate(judged(judge={"model": {"name": "judge", "source": source}}, **extra))

    src = ENDPOINT_JUDGE["source"]
    policy.check(with_judge({**src, "api_key_secret": {"name": "judge-key"}}))
    with pytest.raises(PolicyError, match="not a registered credential") as unknown:
        policy.check(with_judge({**src, "api_key_secret": {"name": "nope"}}))
    assert unknown.value.field == "judge.model.source.api_key_secret"
    with pytest.raises(PolicyError, match="may not be sent to host") as host:
        policy.check(with_judge({**src, "base_url": "http://elsewhere.example/v1",
                                 "api_key_secret": {"name": "judge-key"}}))
    assert host.value.field == "judge.model.source.base_url"
    with pytest.raises(PolicyError, match="network evaluations may not reach"):
        policy.check(with_judge({**src, "base_url": "http://127.0.0.1:8000/v1"}))
    model = {"name": "m", "source": {"type": "openai", "base_url": "http://judge.example/v1", "model": "x",
                                     "api_key_secret": {"name": "other"}}}
    with pytest.raises(PolicyError, match="different credentials"):
        policy.check(with_judge({**src, "api_key_secret": {"name": "judge-key"}}, model))


# -- budeval rejudge -------------------------------------------------------------------------------------------------
def test_rejudge_request_is_the_earlier_request_with_the_new_judge(tmp_path: Path) -> None:
    source = EvalRequest.model_validate(
        judged(gate={"baseline": "e0"}, checkpoint={"series": "s", "step": 1}, labels={"team": "a"})
    ).model_dump(mode="json")
    new_judge = read_judge(json.dumps({"model": ENDPOINT_JUDGE, "max_out_len": 4}))
    file = tmp_path / "judge.json"
    file.write_text(json.dumps({"model": ENDPOINT_JUDGE, "max_out_len": 4}))
    assert read_judge(str(file)) == new_judge
    request = rejudge_request(source, new_judge, "e1-rj-abc123")
    assert request["eval_id"] == "e1-rj-abc123" and request["rejudge_of"] == "e1"
    assert request["judge"]["max_out_len"] == 4 and request["labels"] == {"team": "a"}
    assert request["gate"] is None and request["checkpoint"] is None and request["datasets"] == source["datasets"]
    with pytest.raises(ValidationError, match="not valid"):
        rejudge_request(source, new_judge, "Not A Label")
    with pytest.raises(ValidationError, match="--judge"):
        read_judge('{"model": {"name": "j"}}')
    with pytest.raises(ValidationError, match="cannot read"):
        read_judge(str(tmp_path / "missing.json"))
    long_id = "x" * 63
    assert len(default_new_id(long_id)) <= 63 and default_new_id("e1").startswith("e1-rj-")


def test_a_judges_paths_follow_the_path_policy(tmp_path: Path) -> None:
    from budeval.policy.paths import check_request_paths

    settings = Settings(data_dir=tmp_path / "data", models_root=[tmp_path / "models"], datasets_root=[tmp_path])
    (tmp_path / "qa.jsonl").write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    outside = {"name": "judge", "source": {"type": "huggingface", "path": "/etc/judge"}}
    with pytest.raises(PolicyError) as caught:
        check_request_paths(EvalRequest.model_validate(judged(tmp_path, judge={"model": outside})), settings)
    assert caught.value.field == "judge.model.source.path"
    tokenizer = {**ENDPOINT_JUDGE, "source": {**ENDPOINT_JUDGE["source"], "tokenizer_path": "/etc/tok"}}
    with pytest.raises(PolicyError) as caught:
        check_request_paths(EvalRequest.model_validate(judged(tmp_path, judge={"model": tokenizer})), settings)
    assert caught.value.field == "judge.model.source.tokenizer_path"


def test_a_judge_that_scores_no_dataset_is_refused() -> None:
    """A ``judge`` with no dataset scored ``judge`` (a suite, stock or rule-scored datasets) was accepted and then
    silently unused -- yet part of the identity (an endpoint judge even made the evaluation never reusable), and a
    ``rejudge`` of such an evaluation "re-judged" nothing. Refused, naming what to do."""
    from budeval.engine.catalog import load_suites
    from budeval.service.admission import check_catalog

    # Only the engine's catalog knows which stock datasets (and a suite's) are judged: refused at admission.
    doc = judged()
    doc["datasets"] = ["tiny_qa", {"name": "jq", "path": "/data/qa.jsonl", "scoring": "contains"}]
    suites = load_suites([])
    for body in (doc, {**{k: v for k, v in doc.items() if k != "datasets"}, "suite": "light"},
                 {**doc, "rejudge_of": "e0"}):
        rejected = check_catalog(EvalRequest.model_validate(body), suites)
        assert rejected is not None and rejected.field == "judge" and "no dataset is scored" in rejected.reason
    # A stock LLM-judge dataset is one the judge scores.
    assert check_catalog(EvalRequest.model_validate({**doc, "datasets": ["math_500_llmjudge_gen"]}), suites) is None


def test_a_hugging_face_judge_gets_the_runs_gpus() -> None:
    """An HF judge was rendered with ``run_cfg=dict(num_gpus=0)`` whatever the request's resources: OpenCompass 0.5.4
    sizes the eval task by the judge's ``num_gpus`` (tasks/openicl_eval.py) and its LocalRunner starts it with
    ``CUDA_VISIBLE_DEVICES=`` (none), so the judge's weights ran on CPU on a GPU node. And an endpoint model with an
    HF judge defaulted to a GPU-less run. Right: the HF judge gets the run's GPUs; only a run that loads no weights
    (endpoint model, endpoint or no judge) defaults to none."""
    hf_judge = {"name": "hfj", "source": {"type": "huggingface", "path": "org/judge"}}
    request = EvalRequest.model_validate(judged(judge={"model": hf_judge}, resources={"gpus": 2}))
    judge = ast.unparse(_assignments(render_config(request, request.datasets or []))[JUDGE_VARIABLE])
    assert "run_cfg=dict(num_gpus=2)" in judge
    endpoint_model = {"name": "m", "source": {"type": "openai", "base_url": "http://10.0.0.5:8000/v1", "model": "m"}}
    with_hf_judge = EvalRequest.model_validate(judged(model=endpoint_model, judge={"model": hf_judge}))
    assert with_hf_judge.resources.gpus == 1
    judge = ast.unparse(_assignments(render_config(with_hf_judge, with_hf_judge.datasets or []))[JUDGE_VARIABLE])
    assert "run_cfg=dict(num_gpus=1)" in judge
    assert EvalRequest.model_validate(judged(model=endpoint_model)).resources.gpus == 0  # endpoint judge: no GPU
    # ... nor the small CPU pod defaults of an endpoint run (budeval/workflow/activities.py ``with_cluster_defaults``)
    assert with_hf_judge.loads_weights()
    assert not EvalRequest.model_validate(judged(model=endpoint_model)).loads_weights()
    from budeval.workflow.activities import plan_runs, render_plans

    settings = Settings(endpoint_default_cpu="500m", endpoint_default_memory="2Gi")
    specs = render_plans(with_hf_judge, plan_runs(with_hf_judge, ["jq"]), settings).specs
    assert specs[0].resources.cpu is None and specs[0].resources.memory is None
