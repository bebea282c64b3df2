"""Request schema contract: safe ids, datasets or suite (its identity: tests/engine/test_identity.py)."""

import pytest
from pydantic import ValidationError

from budeval.errors import UnsafeIdError
from budeval.schemas.ids import check_dns_label
from budeval.schemas.request import EvalRequest

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
