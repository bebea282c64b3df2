"""Issue 13, items 1 and 2: a request reaches only credentials an operator registered, sends a key only to the hosts
registered with it, never reaches loopback/metadata addresses, and a run's environment holds only its own key.

Against the real ``budeval serve`` (tests/security/conftest.py); the run is tests/security/recording_runner.py.
"""

from __future__ import annotations

import json
from typing import Any

from tests.security.conftest import ENDPOINT_HOST, OTHER_KEY, TEAM_A_KEY, Secured
from tests.support import wait_until


def endpoint_request(eval_id: str, base_url: str, secret: str | None = "team-a", name: str = "ep") -> dict[str, Any]:
    source: dict[str, Any] = {"type": "openai", "base_url": base_url, "model": "gpt-x", "tokenizer_path": "org/tok"}
    if secret is not None:
        source["api_key_secret"] = {"name": secret}
    return {"eval_id": eval_id, "model": {"name": name, "source": source}, "datasets": ["tiny_qa"], "timeout_s": 600}


def assert_rejected(secured: Secured, eval_id: str, answer: Any, field: str, words: str) -> None:
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "rejected" and body["field"] == field and body["eval_id"] == eval_id, body
    assert words in body["reason"], body
    assert body["request_id"], body
    rejected = wait_until(lambda: [e for e in secured.served.events(eval_id) if e["type"].endswith(".rejected")],
                          what="the rejected event")
    assert rejected[0]["data"]["reason"] == body["reason"]
    assert secured.served.api("GET", f"/evals/{eval_id}").status_code == 404  # no workflow was started


def test_an_unregistered_credential_is_rejected_even_when_its_key_is_there(secured: Secured) -> None:
    # other-team's key is in the service's environment (BUDEVAL_SECRET_OTHER_TEAM_API_KEY) but nobody registered it
    answer = secured.post("/evals", endpoint_request("steal-other", secured.endpoint.url, secret="other-team"))
    assert_rejected(secured, "steal-other", answer, "model.source.api_key_secret", "not a registered credential")


def test_a_registered_credential_goes_only_to_its_hosts(secured: Secured) -> None:
    port = secured.endpoint.server.server_address[1]
    answer = secured.post("/evals", endpoint_request("wrong-host", f"http://127.0.0.3:{port}/v1"))
    assert_rejected(secured, "wrong-host", answer, "model.source.base_url", "may not be sent to host '127.0.0.3'")


def test_metadata_and_loopback_addresses_are_denied_even_without_a_key(secured: Secured) -> None:
    answer = secured.post("/evals", endpoint_request("metadata", "http://169.254.169.254/latest", secret=None))
    assert_rejected(secured, "metadata", answer, "model.source.base_url", "169.254.169.254")
    # a name is resolved and every address checked: localhost is loopback (only 127.0.0.2 is allowed here)
    answer = secured.post("/evals", endpoint_request("loopback-name", "http://localhost:9/v1", secret=None))
    assert_rejected(secured, "loopback-name", answer, "model.source.base_url", "not reach")
    answer = secured.post("/evals", endpoint_request("user-in-url", f"http://u:p@{ENDPOINT_HOST}/v1", secret=None))
    assert_rejected(secured, "user-in-url", answer, "model.source.base_url", "user name or password")


def test_the_run_gets_its_own_key_and_an_allow_listed_environment(secured: Secured) -> None:
    answer = secured.post("/evals", endpoint_request("team-a-ok", secured.endpoint.url))
    assert answer.status_code == 202, answer.text
    calls = wait_until(lambda: list(secured.endpoint.seen), what="the endpoint called by the run", timeout=180)
    assert calls[0][0] == "/v1/chat/completions"
    assert calls[0][1]["authorization"] == f"Bearer {TEAM_A_KEY}"

    env_file = secured.served.data_dir / "results" / "team-a-ok"
    seen = wait_until(lambda: list(env_file.glob("*/.budeval/run-env.json")), what="the run's environment")
    env = json.loads(seen[0].read_text())
    assert env["OPENAI_API_KEY"] == TEAM_A_KEY
    # The one budeval variable a run gets is the folder its usage lines go to (budeval_usage.py): a path, set by
    # the backend for the run, not passed through from the service's environment.
    assert env.pop("BUDEVAL_USAGE_DIR", "").endswith("/.budeval/usage")
    leaked = [k for k in env if k.startswith(("BUDEVAL_", "DAPR_", "APP_API_TOKEN"))]
    assert leaked == [], leaked
    assert OTHER_KEY not in json.dumps(env)
    assert secured.served.token not in json.dumps(env)
    assert "PATH" in env and env["FAKE_OC_FIXTURE"]  # what runs need, and what the operator passed through
