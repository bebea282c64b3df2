"""Issue 13, item 5: read deadlines and connection caps on both HTTP servers, JSON depth and size limits answered
with 400 / a rejection that carries the eval id and the request id, ``budeval submit`` checking before it publishes,
``submit --wait`` following only its own events, and failure excerpts masked."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx

from budeval.service.intake import MAX_REQUEST_BYTES
from budeval.sidecar.dapr_http import SidecarHTTPServer
from tests.security.conftest import Secured
from tests.support import wait_until


def _closed_after_partial(port: int, partial: bytes) -> bytes:
    """Send ``partial`` and wait for the server to close the connection; what it sent back (b"" for nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(partial)
        sock.settimeout(60)  # far beyond the 2 s deadline: only a server without one leaves us waiting here
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_slow_requests_are_cut_off_on_both_servers(secured: Secured) -> None:
    api = _port(secured.served.info["api_url"])
    sidecar = int(secured.served.info["dapr_http_port"])
    for port in (api, sidecar):
        _closed_after_partial(port, b"POST /evals HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        _closed_after_partial(port, b"POST /evals HTTP/1.1\r\nHost: x\r\ncontent-length: 100\r\n\r\n{")  # body short
        _closed_after_partial(port, b"")  # connected, says nothing


def test_the_sidecar_serves_at_most_its_connection_cap() -> None:
    server = SidecarHTTPServer("127.0.0.1", 0, broker=None, max_connections=2, read_timeout_s=120)  # type: ignore[arg-type]
    server.start()
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
    try:
        for sock in held:
            sock.sendall(b"GET /v1.0/healthz HTTP/1.1\r\n")  # hold a handler thread each
        wait_until(lambda: server._slots._value == 0, what="both slots taken")
        assert _closed_after_partial(server.port, b"GET /v1.0/healthz HTTP/1.1\r\n\r\n") == b""
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_deep_json_is_a_400_on_both_servers(secured: Secured) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    sidecar = f"http://127.0.0.1:{secured.served.info['dapr_http_port']}"
    answer = httpx.post(f"{sidecar}/v1.0/publish/budeval-pubsub/budeval.requests", content=deep,
                        headers={"content-type": "application/json"}, timeout=30)
    assert answer.status_code == 400 and "deeper" in answer.text
    deep_request = b'{"eval_id": "deep-1", "labels": ' + b'{"a":' * 3000 + b"1" + b"}" * 3001
    answer = secured.post("/evals", deep_request)
    assert answer.status_code == 400, answer.text
    assert answer.json()["eval_id"] == "deep-1" and answer.json()["request_id"], answer.text


def test_an_oversized_request_is_rejected_with_its_eval_id_and_request_id(secured: Secured) -> None:
    padding = "x" * (MAX_REQUEST_BYTES + 10)
    answer = secured.post("/evals", {"eval_id": "big-http", "labels": {"pad": padding}})
    assert answer.status_code == 400, answer.text
    assert answer.json()["eval_id"] == "big-http" and answer.json()["request_id"], answer.text
    assert f"larger than the limit of {MAX_REQUEST_BYTES}" in answer.json()["reason"]

    event = {"specversion": "1.0", "id": "big-topic-1", "source": "t", "type": "t",
             "data": {"eval_id": "big-topic", "labels": {"pad": padding}}}
    sidecar = f"http://127.0.0.1:{secured.served.info['dapr_http_port']}"
    published = httpx.post(f"{sidecar}/v1.0/publish/budeval-pubsub/budeval.requests", content=json.dumps(event),
                           headers={"content-type": "application/cloudevents+json"}, timeout=30)
    assert published.status_code == 204
    rejected = wait_until(lambda: [e for e in secured.served.events("big-topic") if e["type"].endswith(".rejected")],
                          what="the rejected event of the oversized topic message")
    assert rejected[0]["data"]["request_id"] == "big-topic-1"


def _request_topic_size(secured: Secured) -> int:
    url = f"http://127.0.0.1:{secured.served.info['dapr_http_port']}/v1.0-alpha1/messages"
    return len(httpx.get(url, params={"topic": "budeval.requests", "after": 0, "limit": 10000}, timeout=30).json())


def test_submit_checks_size_and_depth_before_publishing(secured: Secured) -> None:
    before = _request_topic_size(secured)
    big = {"eval_id": "big-cli", "labels": {"pad": "x" * (MAX_REQUEST_BYTES + 10)}}
    for text in (json.dumps(big), "[" * 5000 + "]" * 5000):
        done = secured.served.cli("submit", "-", stdin=text)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.startswith("budeval: error:") and "Traceback" not in done.stderr, done.stderr
    assert _request_topic_size(secured) == before  # nothing was published


def _hf(eval_id: str, name: str = "m", **source: Any) -> dict[str, Any]:
    return {"eval_id": eval_id, "model": {"name": name, "source": {"type": "huggingface", "path": "org/m", **source}},
            "datasets": ["tiny_qa"], "timeout_s": 600}


def test_submit_wait_follows_only_events_after_its_own_publish(secured: Secured) -> None:
    first = secured.served.cli("submit", "-", "--wait", "--timeout", "120",
                               stdin=json.dumps(_hf("reused-id", tokenizer_path="/etc")))
    assert "reused-id: rejected" in first.stdout, first.stdout + first.stderr
    second = secured.served.cli("submit", "-", "--wait", "--timeout", "150", stdin=json.dumps(_hf("reused-id")))
    assert "reused-id: rejected" not in second.stdout, second.stdout + second.stderr
    assert "reused-id: completed" in second.stdout, second.stdout + second.stderr + secured.served.tail()


def test_failure_excerpts_are_masked(secured: Secured) -> None:
    answer = secured.post("/evals", dict(_hf("leaky-run", name="leaky"), force=True))
    assert answer.status_code == 202, answer.text

    def final() -> list[dict[str, Any]]:
        return [e for e in secured.served.events("leaky-run") if e["type"].endswith((".failed", ".completed"))]

    events = wait_until(final, timeout=180, what="the leaky run's end")
    text = json.dumps(events)
    assert "***" in text, text  # the excerpt is there ...
    for secret in ("sk-live-0123456789abcdef", "hunter2pass"):
        assert secret not in text, text  # ... without what it printed


def test_a_delivered_request_leaves_no_body_in_the_topic_log(secured: Secured) -> None:
    leaked = dict(_hf("inline-key"), api_key="sk-inline-0123456789abcdef")  # a sender's mistake: rejected
    published = secured.served.cli("submit", "-", "--wait", "--timeout", "120", stdin=json.dumps(leaked))
    assert "inline-key: rejected" in published.stdout, published.stdout + published.stderr
    url = f"http://127.0.0.1:{secured.served.info['dapr_http_port']}/v1.0-alpha1/messages"

    def log_text() -> str:
        return httpx.get(url, params={"topic": "budeval.requests", "after": 0, "limit": 10000}, timeout=30).text

    wait_until(lambda: "sk-inline-0123456789abcdef" not in log_text(), timeout=60, what="the body removed")
    assert '"redacted":"drop"' in log_text().replace(" ", "")
