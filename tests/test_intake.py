"""Intake turns every malformed request into a Rejection naming the field; valid ones into an EvalRequest."""

import json

import pytest

from budeval.schemas.request import EvalRequest
from budeval.service.intake import MAX_REQUEST_BYTES, Rejection, parse_request

GOOD = {
    "eval_id": "e1",
    "model": {"name": "m", "source": {"type": "huggingface", "path": "/m"}},
    "datasets": ["tiny_qa"],
}


def test_cloudevent_with_object_or_string_data() -> None:
    for data in (GOOD, json.dumps(GOOD)):
        event = {"specversion": "1.0", "id": "1", "source": "t", "type": "x", "data": data}
        assert isinstance(parse_request(json.dumps(event)), EvalRequest)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "eval_id": "../x"}, "eval_id"),
        ({**GOOD, "eval_id": "a/b"}, "eval_id"),
        ({**GOOD, "datasets": "tiny_qa"}, "datasets"),
        ({**GOOD, "unknown": 1}, "unknown"),
        ({**GOOD, "model": {"name": "m", "source": {"type": "openai", "base_url": "ftp://x", "model": "m"}}}, None),
    ],
)
def test_rejections_name_the_field(body: dict[str, object], field: str | None) -> None:
    result = parse_request(json.dumps(body))
    assert isinstance(result, Rejection)
    if field is not None:
        assert result.field is not None and result.field.startswith(field)


def test_garbage_and_oversize() -> None:
    assert isinstance(parse_request(b"\xff\xfe{"), Rejection)
    assert isinstance(parse_request("[1,2]"), Rejection)
    big = parse_request(b"{" + b" " * (MAX_REQUEST_BYTES + 1) + b"}")
    assert isinstance(big, Rejection) and "limit" in big.reason
