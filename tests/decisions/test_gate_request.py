"""The request's ``gate`` block: validated with the request (baseline form, ranges), not part of the identity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from budeval.config import Settings
from budeval.engine.identity import compute_identity
from budeval.schemas.request import EvalRequest

BASE: dict[str, Any] = {
    "eval_id": "ck-2000",
    "model": {"name": "m", "source": {"type": "huggingface", "path": "org/model"}},
    "datasets": ["tiny_qa"],
}


@pytest.mark.parametrize("baseline", ["ck-1000", "best:run-7", "latest:tier=prod", "latest:tier="])
def test_valid_gate_blocks(baseline: str) -> None:
    request = EvalRequest.model_validate({**BASE, "gate": {"baseline": baseline, "tolerance": 2, "correction": "bh"}})
    assert request.gate is not None and request.gate.baseline == baseline and request.gate.alpha == 0.05


@pytest.mark.parametrize(
    "gate",
    [
        {"baseline": "Not-A-Label"},
        {"baseline": "worst:x"},
        {"baseline": "latest:tier"},
        {"baseline": "ck-1\n"},
        {"baseline": "ck-1", "alpha": 1.5},
        {"baseline": "ck-1", "iterations": 10},
        {"baseline": "ck-1", "correction": "bonferroni"},
        {"baseline": "ck-1", "extra": True},
        {},
    ],
)
def test_invalid_gate_blocks_are_rejected(gate: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EvalRequest.model_validate({**BASE, "gate": gate})


def test_the_gate_is_not_part_of_the_identity(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)

    def hub(repo: str, revision: str) -> str:
        return "0" * 40  # a resolved hub commit, without asking the hub

    plain = compute_identity(EvalRequest.model_validate(BASE), {}, settings, hub=hub)
    gated = compute_identity(
        EvalRequest.model_validate({**BASE, "gate": {"baseline": "ck-1000"}}), {}, settings, hub=hub
    )
    assert plain.hash is not None and plain.hash == gated.hash
