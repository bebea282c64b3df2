"""Issue 13, item 3: dataset, model and tokenizer paths must resolve (symlinks followed) inside the configured roots;
anything else is rejected at intake with the reason, and no rejection carries anything of the file's content."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.security.conftest import SECRET_CONTENT, Secured
from tests.support import wait_until


def hf_request(eval_id: str, path: str, datasets: list[Any] | None = None, **source: Any) -> dict[str, Any]:
    return {"eval_id": eval_id, "model": {"name": "m", "source": {"type": "huggingface", "path": path, **source}},
            "datasets": datasets or ["tiny_qa"], "timeout_s": 600}


def _rejected(secured: Secured, eval_id: str, body: dict[str, Any], field: str) -> str:
    answer = secured.post("/evals", body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field and answer.json()["eval_id"] == eval_id, answer.text
    events = wait_until(lambda: [e for e in secured.served.events(eval_id) if e["type"].endswith(".rejected")],
                        what="the rejected event")
    text = answer.text + json.dumps(events)
    assert SECRET_CONTENT not in text
    return str(answer.json()["reason"])


@pytest.mark.parametrize("where", ["outside", "symlink"])
def test_a_custom_dataset_outside_the_datasets_root_is_rejected(secured: Secured, where: str) -> None:
    path = secured.outside / "secret.jsonl" if where == "outside" else secured.datasets_root / "link.jsonl"
    eval_id = f"ds-{where}"
    reason = _rejected(secured, eval_id, hf_request(eval_id, "org/model", [{"name": "c", "path": str(path)}]),
                       "datasets.0.path")
    assert str(secured.datasets_root) in reason


def test_a_custom_dataset_inside_the_root_is_accepted(secured: Secured) -> None:
    good = {"name": "c", "path": str(secured.datasets_root / "good.jsonl")}
    answer = secured.post("/evals", hf_request("ds-inside", "org/model", [good]))
    assert answer.status_code == 202, answer.text


@pytest.mark.parametrize(
    ("eval_id", "path"),
    [
        ("model-etc", "/etc"),
        ("model-symlink", "LINK"),
        ("model-relative", "./model"),
        ("model-deep-relative", "a/b/c"),
        ("model-home", "~/model"),
    ],
)
def test_a_model_path_outside_the_models_root_is_rejected(secured: Secured, eval_id: str, path: str) -> None:
    if path == "LINK":
        path = str(secured.models_root / "link-model")  # -> a folder outside, whose config.json is secret
    _rejected(secured, eval_id, hf_request(eval_id, path), "model.source.path")


def test_a_tokenizer_path_outside_the_models_root_is_rejected(secured: Secured) -> None:
    body = hf_request("tok-outside", str(secured.models_root / "good-model"),
                      tokenizer_path=str(secured.outside / "model"))
    _rejected(secured, "tok-outside", body, "model.source.tokenizer_path")


@pytest.mark.parametrize("path", ["HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2", "GOOD"])
def test_hub_ids_and_paths_inside_the_root_are_accepted(secured: Secured, path: str) -> None:
    if path == "GOOD":
        path = str(secured.models_root / "good-model")
    eval_id = "ok-" + path.rsplit("/", 1)[-1].lower().replace(".", "-").replace("_", "-")[:40]
    answer = secured.post("/evals", hf_request(eval_id, path))
    assert answer.status_code == 202, answer.text
