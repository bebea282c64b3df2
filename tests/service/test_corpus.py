"""The malformed corpus (tests/service/corpus.py, several hundred cases) over real HTTP to the subscription route.

Each case must be answered DROP with exactly one `rejected` event carrying a reason (and the eval id when the id
itself was valid); no workflow may be scheduled and no run submitted; the service must still answer afterwards.
"""

from __future__ import annotations

import json

import httpx

from tests.service.conftest import Harness
from tests.service.corpus import generate


def test_corpus_is_large_and_varied() -> None:
    cases = generate()
    assert len(cases) >= 300
    assert len({c.name for c in cases}) == len(cases)
    assert max(len(c.body) for c in cases) > 10 * 1024 * 1024


def test_every_malformed_request_is_rejected_and_nothing_starts(harness: Harness) -> None:
    cases = generate()
    failures: list[str] = []
    with httpx.Client(timeout=60) as client:
        for case in cases:
            before = len(harness.publisher.events)
            answer = client.post(f"{harness.url}/events/requests", content=case.body,
                                 headers={"content-type": "application/cloudevents+json"})
            new = harness.publisher.events[before:]
            if answer.status_code != 200 or answer.json() != {"status": "DROP"}:
                failures.append(f"{case.name}: answered {answer.status_code} {answer.text[:100]}")
                continue
            if len(new) != 1 or not new[0][1].type.endswith(".rejected"):
                failures.append(f"{case.name}: {len(new)} events")
                continue
            data = new[0][1].data
            if not data.get("reason") or data.get("status") != "rejected":
                failures.append(f"{case.name}: no reason in {data}")
            if case.eval_id is not None and data.get("eval_id") != case.eval_id:
                failures.append(f"{case.name}: rejection names {data.get('eval_id')!r}, not {case.eval_id!r}")
            if len(json.dumps(data)) > 4096:
                failures.append(f"{case.name}: rejection event of {len(json.dumps(data))} bytes echoes the input")
        assert client.get(f"{harness.url}/healthz").json() == {"status": "ok"}
    assert failures == []
    assert harness.workflows.scheduled == []
    assert harness.backend.submitted == []
    metrics = httpx.get(f"{harness.url}/metrics", timeout=10).text
    assert f'budeval_rejected_requests_total{{source="topic"}} {float(len(cases))}' in metrics


def test_malformed_requests_over_post_evals_get_400_or_422(harness: Harness) -> None:
    cases = generate()[::7]
    with httpx.Client(timeout=60, headers=harness.auth) as client:
        for case in cases:
            answer = client.post(f"{harness.url}/evals", content=case.body)
            assert answer.status_code in (400, 422), case.name
            assert answer.json()["reason"], case.name
    assert harness.workflows.scheduled == []
    assert len(harness.events("rejected")) == len(cases)
