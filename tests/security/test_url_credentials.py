"""A credential written into an endpoint's ``base_url`` -- the model's or the judge's -- is refused at admission,
since a base_url is stored and shown everywhere (the rendered config / ConfigMap, provenance, the evaluation row's
``judge`` label, events). ``user:password@`` already was; a key in the query string (``?api_key=...``,
``?key=...``, ``?access_token=...``, a signature) was admitted and stored as is."""

from __future__ import annotations

import pytest

from budeval.errors import PolicyError
from budeval.policy.credentials import EndpointPolicy, StaticRegistry
from budeval.schemas.request import EvalRequest

SECRET = "Zx9QwErTyUiOp4AsDfGh"


def request(model_url: str, judge_url: str = "http://10.0.0.6:8000/v1") -> EvalRequest:
    def source(url: str) -> dict[str, object]:
        return {"type": "openai", "base_url": url, "model": "m"}

    return EvalRequest.model_validate({
        "eval_id": "e1", "model": {"name": "m", "source": source(model_url)},
        "datasets": [{"name": "qa", "path": "/data/qa.jsonl", "scoring": "judge"}],
        "judge": {"model": {"name": "j", "source": source(judge_url)}},
    })


POLICY = EndpointPolicy(StaticRegistry({}), resolver=lambda host: ["10.0.0.7"])
OK = "http://10.0.0.5:8000/v1"


@pytest.mark.parametrize("url", [
    f"https://llm.example.com/v1?api_key={SECRET}",
    f"https://llm.example.com/v1?api-version=2024-02-01&api-key={SECRET}",
    f"https://llm.example.com/v1?key={SECRET}",
    f"https://llm.example.com/v1?access_token={SECRET}",
    f"https://llm.example.com/v1?token={SECRET}",
    f"https://llm.example.com/v1?sig={SECRET}",
    f"https://llm.example.com/v1?X-Amz-Signature={SECRET}",
    f"https://llm.example.com/v1?password={SECRET}",
    f"https://llm.example.com/v1#access_token={SECRET}",
    f"https://u:{SECRET}@llm.example.com/v1",
    f"https://{SECRET}@llm.example.com/v1",
])
@pytest.mark.parametrize("who", ["model", "judge"])
def test_a_credential_in_the_url_is_refused(url: str, who: str) -> None:
    doc = request(url, OK) if who == "model" else request(OK, url)
    with pytest.raises(PolicyError) as caught:
        POLICY.check(doc)
    assert caught.value.field == ("model.source.base_url" if who == "model" else "judge.model.source.base_url")
    assert SECRET not in caught.value.message


@pytest.mark.parametrize("url", [
    "https://llm.example.com/v1?api-version=2024-02-01",
    "https://llm.example.com/openai/deployments/gpt/v1",
    "https://llm.example.com/v1?monkey=1",
])
def test_other_query_parameters_stay_allowed(url: str) -> None:
    POLICY.check(request(url, url))
