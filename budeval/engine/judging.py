"""Judges: the prompt a judge model gets, and what of a judge is part of an evaluation's identity.

A request's ``judge`` (``JudgeSpec``) scores the datasets marked ``scoring: judge`` through OpenCompass 0.5.4's
``GenericLLMEvaluator`` (``opencompass/evaluator/generic_llm_evaluator.py``): per example the judge model gets
:func:`template_of` with ``{question}``, ``{answer}`` (the gold) and ``{prediction}`` filled in, and answers ``A``
(right) or ``B`` (wrong). budeval's dict post-processor (``budeval_judge_postprocess`` in
budeval/engine/opencompass_plugin/budeval_scoring.py) reads that letter into the example's ``correct`` and keeps the
judge's raw answer as ``judge_answer``, so verdicts and raw answers reach the ``predictions`` table.

Identity (budeval/engine/identity.py asks :func:`judge_component` for the parts that are not the judge's weights):
the template's sha256, the judge's generation settings, and the judge model's own identity (hub commit or folder
digests; an endpoint judge cannot be pinned, which leaves the identity unresolved, as an endpoint model does).
"""

from __future__ import annotations

import hashlib
from typing import Any

from budeval.schemas.request import JudgeSpec

#: The judge's prompt when the request gives none: OpenCompass's grader prompts ask the same question at length
#: (``GRADER_TEMPLATE`` of its ``*_llmjudge_gen`` configs); this short form suits small judges too.
DEFAULT_TEMPLATE = (
    "You are grading an answer to a question against the correct answer.\n"
    "Question: {question}\n"
    "Correct answer: {answer}\n"
    "Answer to grade: {prediction}\n"
    "Is the answer to grade correct? Reply with only the letter A (correct) or B (incorrect)."
)


def template_of(judge: JudgeSpec) -> str:
    """The judge's prompt: the request's ``template`` or :data:`DEFAULT_TEMPLATE`."""
    return judge.template if judge.template is not None else DEFAULT_TEMPLATE


def template_hash(judge: JudgeSpec) -> str:
    """sha256 hex of the judge's prompt text (stored in the identity and provenance)."""
    return hashlib.sha256(template_of(judge).encode("utf-8")).hexdigest()


def judge_settings(judge: JudgeSpec) -> dict[str, Any]:
    """The judge's generation settings as they reach OpenCompass (part of the identity)."""
    return judge.model_dump(mode="json", include={"max_out_len", "max_seq_len", "batch_size", "temperature"})


def judge_component(judge: JudgeSpec, model: dict[str, Any]) -> dict[str, Any]:
    """The identity's ``judge`` entry: ``model`` is the judge model's identity (identity.py ``_model``)."""
    return {
        "name": judge.model.name,
        "model": model,
        "template_sha256": template_hash(judge),
        "settings": judge_settings(judge),
    }


def judge_label(judge: JudgeSpec, model: dict[str, Any]) -> str:
    """A short, readable judge identity for the evaluation row's ``judge`` column: ``name@commit`` (hub),
    ``name@sha256:<digest>`` (folder) or ``name@<base_url>#<model>`` (endpoint), then ``/t:<template hash[:12]>``."""
    source = judge.model.source
    if model.get("kind") == "hub" and model.get("commit"):
        pinned = str(model["commit"])
    elif model.get("kind") == "folder" and model.get("files"):
        from budeval.engine.digests import combine

        pinned = f"sha256:{combine(model['files'])[:16]}"
    elif source.type == "openai":
        pinned = f"{source.base_url}#{source.model}"
    else:
        pinned = "unpinned"
    return f"{judge.model.name}@{pinned}/t:{template_hash(judge)[:12]}"
