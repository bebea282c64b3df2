"""Request schema contract: safe ids, datasets or suite (its identity: tests/engine/test_identity.py)."""

import json
import re

import pytest
from pydantic import ValidationError

from budeval.errors import UnsafeIdError
from budeval.schemas.ids import check_dns_label
from budeval.schemas.request import CustomDataset, EvalRequest
from budeval.service.intake import Rejection, parse_request

BASE = {
    "eval_id": "e1",
    "model": {"name": "m", "source": {"type": "huggingface", "path": "/m"}},
    "datasets": ["tiny_qa"],
}


@pytest.mark.parametrize("bad", ["../x", "a/b", "A", "x" * 64, "é", "", "-a"])
def test_unsafe_ids_rejected(bad: str) -> None:
    with pytest.raises(UnsafeIdError):
        check_dns_label(bad)
    with pytest.raises(ValidationError):
        EvalRequest.model_validate({**BASE, "eval_id": bad})


def test_datasets_or_suite_required() -> None:
    with pytest.raises(ValidationError):
        EvalRequest.model_validate({k: v for k, v in BASE.items() if k != "datasets"})


# -- scoring of custom datasets (docs/opencompass.md "Scoring") -------------------------------------------------------
def custom(**fields: object) -> dict[str, object]:
    return {**BASE, "datasets": [{"name": "mine", "path": "/data/mine.jsonl", **fields}]}


def scoring_of(**fields: object) -> str:
    ref = EvalRequest.model_validate(custom(**fields)).datasets[0]  # type: ignore[index]
    assert isinstance(ref, CustomDataset)
    return ref.scoring


def test_scoring_defaults_by_kind_and_is_written_out() -> None:
    assert scoring_of() == "contains"
    assert scoring_of(kind="qa", scoring=None) == "contains"
    assert scoring_of(kind="mcq") == "option"
    assert CustomDataset(name="x", path="/x.jsonl", kind="mcq").scoring == "option"
    dumped = EvalRequest.model_validate(custom()).model_dump(mode="json")
    assert dumped["datasets"][0]["scoring"] == "contains"  # an explicit value in the identity, not a null


@pytest.mark.parametrize(
    ("kind", "scoring"),
    [
        ("qa", "exact"),
        ("qa", "normalized"),
        ("qa", "contains"),
        ("qa", r"regex:answer is (\w+)"),
        ("mcq", "option"),
        ("mcq", "exact"),
        ("mcq", "normalized"),
        ("mcq", r"regex:\(([A-D])\)"),
    ],
)
def test_each_scoring_is_accepted_for_its_kinds(kind: str, scoring: str) -> None:
    assert scoring_of(kind=kind, scoring=scoring) == scoring


@pytest.mark.parametrize(
    ("kind", "scoring", "reason"),
    [
        ("mcq", "judge", "does not apply to mcq"),
        ("qa", "regex:answer is (\\w+", "invalid regular expression"),
        ("qa", "regex:[", "invalid regular expression"),
        ("qa", "regex:answer is \\w+", "capturing group"),
        ("qa", "regex:", "needs a pattern"),
        ("qa", "option", "does not apply to qa"),
        ("mcq", "contains", "does not apply to mcq"),
        ("qa", "Exact", "does not apply to qa"),
        ("qa", "", "does not apply to qa"),
        ("qa", "x" * 600, "at most 512"),
    ],
)
def test_bad_scoring_is_rejected_with_its_reason(kind: str, scoring: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(reason)):
        EvalRequest.model_validate(custom(kind=kind, scoring=scoring))
    # Through intake (the topic and POST /evals), the rejection carries the same reason and names the field.
    rejection = parse_request(json.dumps(custom(kind=kind, scoring=scoring)))
    assert isinstance(rejection, Rejection)
    assert reason in rejection.reason and (rejection.field or "").startswith("datasets")


def test_scoring_is_part_of_the_identity() -> None:
    from budeval.config import Settings
    from budeval.engine.identity import compute_identity

    def dataset_component(**fields: object) -> object:
        request = EvalRequest.model_validate(custom(**fields))
        identity = compute_identity(request, {}, Settings(), digests=None, hub=lambda repo, rev: None)
        return identity.components["datasets"]

    parts = [dataset_component(scoring=s) for s in ("contains", "exact", "normalized", "regex:(\\d+)", "regex:(\\w+)")]
    assert len({repr(p) for p in parts}) == 5
    # Omitted and the default spelled out are the same evaluation.
    assert dataset_component() == dataset_component(scoring="contains")


ENDPOINT_MODEL = {
    "name": "gpt",
    "source": {"type": "openai", "base_url": "https://llm.example/v1", "model": "m", "api_key_secret": {"name": "k"}},
}


def test_endpoint_runs_request_no_gpu_unless_asked() -> None:
    """An endpoint model runs no weights: its Job must not wait for a GPU node (issue 15)."""
    plain = EvalRequest.model_validate({**BASE, "model": ENDPOINT_MODEL})
    assert plain.resources.gpus == 0
    with_cpu = EvalRequest.model_validate({**BASE, "model": ENDPOINT_MODEL, "resources": {"cpu": "2"}})
    assert (with_cpu.resources.gpus, with_cpu.resources.cpu) == (0, "2")
    asked = EvalRequest.model_validate({**BASE, "model": ENDPOINT_MODEL, "resources": {"gpus": 2}})
    assert asked.resources.gpus == 2
    assert EvalRequest.model_validate(BASE).resources.gpus == 1  # a Hugging Face model keeps one GPU
    # The same through the service's intake (JSON bytes, as a CloudEvent's data).
    parsed = parse_request(json.dumps({**BASE, "model": ENDPOINT_MODEL}).encode())
    assert not isinstance(parsed, Rejection) and parsed.resources.gpus == 0


# -- the checkpoint block (docs/decisions.md "Checkpoint series") -----------------------------------------------------
def test_checkpoint_block_is_optional_and_validated() -> None:
    assert EvalRequest.model_validate(BASE).checkpoint is None
    cp = EvalRequest.model_validate({**BASE, "checkpoint": {"series": "run-7", "step": 2000}}).checkpoint
    assert cp is not None and (cp.series, cp.step, cp.tokens_seen) == ("run-7", 2000, None)
    full = {"series": "llama_3.1-ft", "step": 0, "tokens_seen": 4_194_304_000}
    cp = EvalRequest.model_validate({**BASE, "checkpoint": full}).checkpoint
    assert cp is not None and cp.model_dump() == full


@pytest.mark.parametrize(
    "bad",
    [
        {"series": "run-7"},  # no step
        {"step": 1},  # no series
        {"series": "run-7", "step": -1},
        {"series": "run-7", "step": 1, "tokens_seen": -5},
        {"series": "run-7", "step": "ten"},
        {"series": "../x", "step": 1},
        {"series": "a/b", "step": 1},
        {"series": "", "step": 1},
        {"series": "x" * 129, "step": 1},
        {"series": "run-7", "step": 1, "epoch": 2},  # unknown fields are refused
    ],
)
def test_bad_checkpoint_blocks_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EvalRequest.model_validate({**BASE, "checkpoint": bad})
    rejected = parse_request(json.dumps({**BASE, "checkpoint": bad}).encode())
    assert isinstance(rejected, Rejection) and "checkpoint" in f"{rejected.field} {rejected.reason}"


def test_checkpoint_is_not_part_of_the_identity() -> None:
    """The model is what differs between checkpoints; the same model at another step label is the same question."""
    from budeval.config import Settings
    from budeval.engine.identity import compute_identity

    def identity(**extra: object) -> object:
        request = EvalRequest.model_validate({**BASE, "model": {"name": "m", "source": {"type": "huggingface",
                                                                                         "path": "org/m"}}, **extra})
        return compute_identity(request, {}, Settings(), digests=None, hub=lambda repo, rev: "a" * 40).hash

    plain = identity()
    assert plain is not None
    assert identity(checkpoint={"series": "s", "step": 1}) == plain
    assert identity(checkpoint={"series": "t", "step": 9, "tokens_seen": 10}) == plain
