"""Issue 13, item 1 on Kubernetes: only Secrets labelled ``budeval.io/credential=true`` are credentials, each sent only
to the hosts of its ``budeval.io/allowed-hosts`` annotation -- against the real apiserver (scripts/kube/apiserver.sh)
and the real ``budeval serve`` with the Kubernetes backend. The service reads Secret metadata only.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from budeval.backends.kubernetes.api import JsonApi
from tests.k8s.conftest import kube_admin, kube_cluster, namespace  # noqa: F401 (fixtures)
from tests.service.serve_process import ServeProcess, serve_env

ENDPOINT = "http://10.0.0.5:8000/v1"  # a private address: allowed by default, never connected to here


def _secret(api: JsonApi, ns: str, name: str, labels: dict[str, str], annotations: dict[str, str]) -> None:
    body = {"metadata": {"name": name, "labels": labels, "annotations": annotations},
            "data": {"api-key": base64.b64encode(b"sk-" + name.encode()).decode()}}
    api.request("POST", f"/api/v1/namespaces/{ns}/secrets", what="secret", body=body)


@pytest.fixture
def k8s_served(tmp_path: Path, kube_cluster: Path, kube_admin: JsonApi, namespace: str) -> Iterator[ServeProcess]:  # noqa: F811
    _secret(kube_admin, namespace, "team-a-openai", {"budeval.io/credential": "true"},
            {"budeval.io/allowed-hosts": "10.0.0.5, api.example.com"})
    # shaped like the chart's own Secrets: not labelled, so never a credential
    _secret(kube_admin, namespace, "budeval-store", {"app.kubernetes.io/name": "budeval"}, {})
    _secret(kube_admin, namespace, "labelled-false", {"budeval.io/credential": "false"},
            {"budeval.io/allowed-hosts": "*"})
    env = serve_env(tmp_path, "process", BUDEVAL_BACKEND="kubernetes", BUDEVAL_NAMESPACE=namespace,
                    KUBECONFIG=str(kube_cluster), BUDEVAL_RESULTS_ROOT=str(tmp_path / "results"),
                    BUDEVAL_CREDENTIAL_SOURCE="secrets")  # the opt-in registry of labelled Secrets
    served = ServeProcess(tmp_path, {k: v for k, v in env.items() if k != "KUBERNETES_SERVICE_HOST"}).start()
    try:
        yield served.wait_ready(timeout=180)
    finally:
        served.stop()


def _submit(served: ServeProcess, eval_id: str, secret: str, base_url: str = ENDPOINT) -> httpx.Response:
    source: dict[str, Any] = {"type": "openai", "base_url": base_url, "model": "gpt-x", "tokenizer_path": "org/tok",
                              "api_key_secret": {"name": secret}}
    body = {"eval_id": eval_id, "model": {"name": "ep", "source": source}, "datasets": ["tiny_qa"]}
    return httpx.post(served.info["api_url"] + "/evals", json=body, timeout=60,
                      headers={"authorization": f"Bearer {served.token}"})


def test_only_labelled_secrets_are_credentials_and_only_for_their_hosts(k8s_served: ServeProcess) -> None:
    for eval_id, secret in (("own-secret", "budeval-store"), ("false-label", "labelled-false"),
                            ("no-such", "no-such-secret")):
        answer = _submit(k8s_served, eval_id, secret)
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "model.source.api_key_secret", answer.text
        assert "not a registered credential" in answer.json()["reason"]
    answer = _submit(k8s_served, "other-host", "team-a-openai", "http://10.0.0.6:8000/v1")
    assert answer.status_code == 422 and answer.json()["field"] == "model.source.base_url", answer.text
    answer = _submit(k8s_served, "allowed", "team-a-openai")
    assert answer.status_code == 202, answer.text + k8s_served.tail()

