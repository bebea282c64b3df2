"""Issue 13, item 4: the subscription routes need Dapr's app token, which the embedded sidecar gets (generated per
start) and sends; ``/docs`` and ``/metrics`` follow their settings (here: docs off, metrics behind the token)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.security.conftest import Secured
from tests.support import wait_until

REQUEST = {"eval_id": "via-route", "model": {"name": "m", "source": {"type": "huggingface", "path": "org/m"}},
           "datasets": ["tiny_qa"], "timeout_s": 600}


@pytest.mark.parametrize("headers", [{}, {"dapr-api-token": "guessed"}])
def test_the_subscription_routes_refuse_calls_without_the_app_token(secured: Secured,
                                                                    headers: dict[str, str]) -> None:
    url = secured.served.info["api_url"]
    event = {"specversion": "1.0", "id": "forged-1", "source": "x", "type": "t", "data": REQUEST}
    answer = httpx.post(url + "/events/requests", content=json.dumps(event), headers=headers, timeout=30)
    assert answer.status_code == 401, answer.text
    assert httpx.get(url + "/dapr/subscribe", headers=headers, timeout=30).status_code == 401
    assert secured.served.api("GET", "/evals/via-route").status_code == 404  # nothing started


def test_the_embedded_sidecar_still_delivers_with_its_token(secured: Secured) -> None:
    body = dict(REQUEST, eval_id="via-topic")
    published = secured.served.cli("submit", "-", stdin=json.dumps(body))
    assert published.returncode == 0, published.stderr
    wait_until(lambda: secured.served.api("GET", "/evals/via-topic").status_code == 200, timeout=120,
               what="the evaluation started from the topic")


def test_docs_and_metrics_follow_their_settings(secured: Secured) -> None:
    url = secured.served.info["api_url"]
    assert httpx.get(url + "/docs", timeout=30).status_code == 404
    assert httpx.get(url + "/openapi.json", timeout=30).status_code == 404
    assert httpx.get(url + "/metrics", timeout=30).status_code == 401
    assert secured.served.api("GET", "/metrics").status_code == 200
    assert httpx.get(url + "/healthz", timeout=30).status_code == 200
