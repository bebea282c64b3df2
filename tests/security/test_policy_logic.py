"""Pure logic of the policies (no service): host patterns, the address deny-list with resolution, hub id vs path,
path roots with symlinks, JSON depth, masking, the run environment. The service-level proofs are the other files."""

from __future__ import annotations

from pathlib import Path

import pytest

from budeval.backends.runenv import run_environment
from budeval.config import Settings
from budeval.errors import PolicyError, ValidationError
from budeval.jsonlimits import TooDeepError, check_depth
from budeval.masking import redact
from budeval.policy.credentials import (
    Credential,
    EndpointPolicy,
    StaticRegistry,
    credential_from_metadata,
    host_allowed,
)
from budeval.policy.paths import check_file, is_hub_id
from budeval.schemas.request import EvalRequest


def endpoint(base_url: str, secret: str | None = None) -> EvalRequest:
    source: dict[str, object] = {"type": "openai", "base_url": base_url, "model": "m"}
    if secret:
        source["api_key_secret"] = {"name": secret}
    return EvalRequest.model_validate({"eval_id": "e", "model": {"name": "m", "source": source},
                                       "datasets": ["tiny_qa"]})


def policy(resolved: dict[str, list[str]], allowed: tuple[str, ...] = ()) -> EndpointPolicy:
    def resolver(host: str) -> list[str]:
        if host not in resolved:
            raise OSError("no such host")
        return resolved[host]

    return EndpointPolicy(StaticRegistry({"k": ["api.example.com", "*.corp.example"]}), allowed_networks=allowed,
                          resolver=resolver)


@pytest.mark.parametrize(("host", "ok"), [("api.example.com", True), ("API.example.com.", True),
                                          ("x.corp.example", True), ("corp.example", False),
                                          ("evil-api.example.com", False), ("api.example.com.evil", False)])
def test_host_patterns(host: str, ok: bool) -> None:
    assert host_allowed(host, ("api.example.com", "*.corp.example")) is ok


@pytest.mark.parametrize(("url", "resolved"), [
    ("http://127.0.0.1/v1", {}),
    ("http://[::1]/v1", {}),
    ("http://[::ffff:169.254.169.254]/v1", {}),
    ("http://0.0.0.0/v1", {}),
    ("http://metadata.google.internal/v1", {}),
    ("http://sneaky.example/v1", {"sneaky.example": ["10.1.2.3", "169.254.169.254"]}),  # one bad address is enough
    ("http://2130706433/v1", {"2130706433": ["127.0.0.1"]}),  # integer form, as the C resolver reads it
    ("http://unresolvable.example/v1", {}),
])
def test_denied_addresses(url: str, resolved: dict[str, list[str]]) -> None:
    with pytest.raises(PolicyError) as caught:
        policy(resolved).check(endpoint(url))
    assert caught.value.field == "model.source.base_url"


def test_private_addresses_and_operator_exceptions_are_allowed() -> None:
    policy({"vllm.svc": ["10.0.0.7"]}).check(endpoint("http://vllm.svc:8000/v1"))
    policy({}, allowed=("127.0.0.0/8",)).check(endpoint("http://127.0.0.1:8000/v1"))


def test_credentials_must_be_registered_and_match_the_host() -> None:
    checked = policy({"api.example.com": ["93.184.216.34"], "x.corp.example": ["10.0.0.8"]})
    checked.check(endpoint("https://api.example.com/v1", "k"))
    checked.check(endpoint("https://x.corp.example/v1", "k"))
    with pytest.raises(PolicyError, match="not a registered credential"):
        checked.check(endpoint("https://api.example.com/v1", "other"))
    with pytest.raises(PolicyError, match="may not be sent"):
        checked.check(endpoint("https://x.corp.example.evil/v1", "k"))


def test_secret_metadata_needs_the_label() -> None:
    meta = {"name": "s", "labels": {"budeval.io/credential": "true"},
            "annotations": {"budeval.io/allowed-hosts": "a.example, *.b.example"}}
    assert credential_from_metadata(meta) == Credential("s", ("a.example", "*.b.example"))
    assert credential_from_metadata({**meta, "labels": {"budeval.io/credential": "True "}}) is None
    assert credential_from_metadata({**meta, "labels": {}}) is None
    broken = {**meta, "annotations": {"budeval.io/allowed-hosts": "http://a.example/"}}
    assert credential_from_metadata(broken) == Credential("s", ())


def test_credentials_file_merges_and_bad_files_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    path.write_text('{"b": ["b.example"]}')
    registry = StaticRegistry.from_settings(Settings(credentials={"a": ["a.example"]}, credentials_file=path))
    assert registry.lookup("a") and registry.lookup("b") and registry.lookup("c") is None
    path.write_text('{"b": "b.example"}')
    with pytest.raises(ValidationError, match="credentials_file"):
        StaticRegistry.from_settings(Settings(credentials_file=path))


@pytest.mark.parametrize(("value", "hub"), [("gpt2", True), ("org/name-1.5", True), ("/models/x", False),
                                            ("./x", False), ("a/b/c", False), ("~/x", False), ("org/..", False),
                                            (".hidden/x", False)])
def test_hub_id_or_path(value: str, hub: bool) -> None:
    assert is_hub_id(value) is hub


def test_paths_resolve_inside_roots(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "inner").symlink_to(root / "sub")
    check_file(str(root / "sub" / "d.jsonl"), [root], field="f", hub_ok=False)
    check_file(str(root / "inner" / "d.jsonl"), [root], field="f", hub_ok=False)
    for bad in (str(root / "escape" / "d.jsonl"), str(outside / "d.jsonl"), str(root) + "-sibling/d.jsonl",
                "org/name"):
        with pytest.raises(PolicyError):
            check_file(bad, [root], field="f", hub_ok=False)


def test_json_depth() -> None:
    check_depth(b'{"a": "[[[[[[[[[[[[[[[["}', 3)
    check_depth(b"[" * 64 + b"]" * 64)
    with pytest.raises(TooDeepError):
        check_depth(b"[" * 65)
    with pytest.raises(TooDeepError):
        check_depth('{"a":' * 100)


def test_one_masking_function() -> None:
    text = redact("key sk-abcdefghijklmnop Authorization: Bearer xyz123 api_key=hunter2 "
                  "postgres://admin:pw1234@db:5432/x password: p4ss known-value-123", known=["known-value-123"])
    for secret in ("abcdefghijklmnop", "xyz123", "hunter2", "pw1234", "p4ss", "known-value-123"):
        assert secret not in text, text


def test_run_environment_is_allow_listed() -> None:
    env = run_environment({"PATH": "/bin", "BUDEVAL_API_TOKEN": "t", "BUDEVAL_SECRET_X_API_KEY": "k",
                           "APP_API_TOKEN": "a", "OPENAI_API_KEY": "service-own", "LC_ALL": "C", "MY_VAR": "1",
                           "DAPR_GRPC_PORT": "1"}, ["MY_*"], {"OPENAI_API_KEY": "run-own"})
    assert env == {"PATH": "/bin", "LC_ALL": "C", "MY_VAR": "1", "OPENAI_API_KEY": "run-own"}


def test_localhost_follows_its_addresses() -> None:
    loopback = {"localhost": ["127.0.0.1", "::1"]}
    with pytest.raises(PolicyError):
        policy(loopback).check(endpoint("http://localhost:8000/v1"))
    policy(loopback, allowed=("127.0.0.0/8", "::1/128")).check(endpoint("http://localhost:8000/v1"))
