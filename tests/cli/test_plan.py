"""``budeval plan``: the real command (a ``budeval`` process) on real files and a real chDB store; nothing starts."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from budeval.storage.base import EvaluationRecord
from budeval.storage.factory import open_store

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "light.yaml").write_text("name: light\ndatasets: [tiny_qa, tiny_mcq]\n")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\x02" * 256)
    environ = dict(os.environ, BUDEVAL_DATA_DIR=str(tmp_path / "data"), BUDEVAL_SUITES_DIR=str(suites))
    environ["BUDEVAL_MODELS_ROOT"] = environ["BUDEVAL_DATASETS_ROOT"] = str(tmp_path)  # the policy's path roots
    environ["HF_HUB_OFFLINE"] = "1"
    return {"tmp": tmp_path, "model": model, "store": f"chdb://{tmp_path / 'ch'}", "environ": environ}


def _request(env: dict[str, Any], **extra: Any) -> dict[str, Any]:
    source = {"type": "huggingface", "path": str(env["model"])}
    return {"eval_id": "plan-1", "model": {"name": "m", "source": source}, "datasets": ["tiny_qa"], **extra}


def _plan(env: dict[str, Any], request: dict[str, Any], *flags: str) -> tuple[int, str, str]:
    path = env["tmp"] / "request.json"
    path.write_text(json.dumps(request))
    argv = [sys.executable, "-m", "budeval.cli.main", "plan", str(path), "--store", env["store"], *flags]
    done = subprocess.run(argv, capture_output=True, text=True, env=env["environ"], timeout=120)
    return done.returncode, done.stdout, done.stderr


def _json(env: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    code, out, err = _plan(env, request, "--json")
    assert code == 0, err
    return dict(json.loads(out))


def test_a_suite_is_planned_as_its_datasets_with_rendered_configs(env: dict[str, Any]) -> None:
    plan = _json(env, _request(env, datasets=None, suite="light"))
    assert plan["valid"] is True and set(plan) >= {"identity", "datasets", "configs", "reuse"}
    assert [(d["name"], d["kind"]) for d in plan["datasets"]] == [("tiny_mcq", "bundled"), ("tiny_qa", "bundled")]
    assert [r["datasets"] for r in plan["runs"]] == [["tiny_qa"], ["tiny_mcq"]]
    for config in plan["configs"].values():
        assert config["hash"] == hashlib.sha256(config["text"].encode()).hexdigest()
        assert "from opencompass.models import HuggingFacewithChatTemplate" in config["text"]
    listed = _json(env, _request(env, datasets=["tiny_qa", "tiny_mcq"]))
    assert plan["identity"]["hash"] == listed["identity"]["hash"] is not None
    # a fresh install: nothing stored yet, and the plan created no store to find that out
    assert plan["reuse"] == {"would_reuse": False, "from": None, "why": "nothing stored yet (the store does not exist)"}
    assert not (env["tmp"] / "ch").exists()


def test_a_custom_file_is_named_by_its_bytes(env: dict[str, Any]) -> None:
    data = env["tmp"] / "mine.jsonl"
    data.write_bytes(b'{"question": "q", "answer": "a"}\n')
    plan = _json(env, _request(env, datasets=[{"name": "mine", "path": str(data), "kind": "qa"}]))
    (mine,) = plan["datasets"]
    assert mine["kind"] == "custom" and mine["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert mine["spec"] == {"name": "mine", "kind": "qa", "scoring": "contains"}  # where it lies is not the work


def test_hub_ids_with_and_without_a_resolvable_revision(env: dict[str, Any]) -> None:
    moving = _json(env, _request(env, model={"name": "m", "source": {"type": "huggingface", "path": "org/m"}}))
    assert moving["identity"]["hash"] is None and moving["reuse"]["would_reuse"] is False
    assert "revision 'main' could not be resolved" in moving["identity"]["unresolved"][0]
    source = {"type": "huggingface", "path": "org/m", "revision": COMMIT}
    pinned = _json(env, _request(env, model={"name": "m", "source": source}))
    assert pinned["identity"]["hash"] is not None
    assert pinned["identity"]["components"]["model"] == {
        "mode": "chat",
        "kind": "hub",
        "id": "org/m",
        "commit": COMMIT,
    }


def test_a_local_folder_with_changed_weights_is_another_identity(env: dict[str, Any]) -> None:
    before = _json(env, _request(env))["identity"]
    weights = env["model"] / "model.safetensors"
    weights.write_bytes(b"\x03" * 300)
    after = _json(env, _request(env))["identity"]
    assert before["hash"] != after["hash"]
    assert before["components"]["model"]["files"]["config.json"] == after["components"]["model"]["files"]["config.json"]
    assert after["components"]["model"]["files"]["model.safetensors"] == hashlib.sha256(b"\x03" * 300).hexdigest()


def test_reuse_names_the_evaluation_and_force_does_not_reuse(env: dict[str, Any]) -> None:
    identity = _json(env, _request(env))["identity"]["hash"]
    store = open_store(env["store"])
    try:
        store.migrate()
        store.record_evaluation(EvaluationRecord(eval_id="done-1", status="completed", params_hash=identity))
    finally:
        store.close()
    again = _json(env, _request(env, eval_id="plan-2"))
    assert again["reuse"] == {"would_reuse": True, "from": "done-1", "why": "a completed evaluation has this identity"}
    assert _json(env, _request(env, eval_id="plan-3", force=True))["reuse"]["would_reuse"] is False
    code, text, _ = _plan(env, _request(env, eval_id="plan-4"))
    assert code == 0 and f"identity  {identity}" in text and "REUSED from done-1" in text
    assert "model.safetensors" in text and "tiny_qa" in text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"datasets": ["no_such_dataset"]}, "datasets"),
        ({"generation": {"max_out_len": "64"}}, "generation.max_out_len"),
        ({"suite": "light"}, "<request>"),
    ],
)
def test_an_invalid_request_exits_1_with_the_reason(env: dict[str, Any], change: dict[str, Any], field: str) -> None:
    code, out, err = _plan(env, _request(env, **change), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["valid"] is False and doc["field"] == field and doc["reason"]
    assert err.strip().splitlines()[-1].startswith("budeval: error: rejected: ")
    code, out, err = _plan(env, _request(env, **change))
    assert code == 1 and out == "" and "rejected" in err


def test_the_policy_rejects_as_intake_does(env: dict[str, Any], tmp_path: Path) -> None:
    """Paths outside the roots and an endpoint naming an unregistered credential: rejected by plan too."""
    outside = _request(env)
    outside["model"]["source"]["path"] = "/etc"
    code, out, _ = _plan(env, outside, "--json")
    assert code == 1 and json.loads(out)["field"].startswith("model.source")
    endpoint = {"type": "openai", "base_url": "https://api.example.com/v1", "model": "m",
                "api_key_secret": {"name": "other-team", "key": "api-key"}}
    code, out, _ = _plan(env, {**_request(env), "model": {"name": "m", "source": endpoint}}, "--json")
    doc = json.loads(out)
    assert code == 1 and "not a registered credential" in doc["reason"]
