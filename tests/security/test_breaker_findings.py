"""Breaker 13: attacks on the hardening of issue 13 (credentials by policy, run environment, masking, path roots,
JSON/HTTP limits). Every test here FAILS on the code as merged and states what is right and why.

Pure functions wherever possible; the only server started is the embedded sidecar's HTTP server (in-process, no app).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from budeval.backends.runenv import secret_env_name
from budeval.config import Settings
from budeval.engine.results.layout import excerpt, file_excerpt
from budeval.errors import PolicyError
from budeval.jsonlimits import TooDeepError, check_depth
from budeval.masking import redact
from budeval.policy.credentials import EndpointPolicy, StaticRegistry
from budeval.policy.paths import check_request_paths, is_hub_id
from budeval.schemas.request import EvalRequest


def endpoint(base_url: str, secret: str | None = None, key: str | None = None) -> EvalRequest:
    source: dict[str, object] = {"type": "openai", "base_url": base_url, "model": "m"}
    if secret:
        source["api_key_secret"] = {"name": secret, **({"key": key} if key else {})}
    return EvalRequest.model_validate({"eval_id": "e", "model": {"name": "m", "source": source},
                                       "datasets": ["tiny_qa"]})


# -- 0. endpoint models: the tokenizer OpenCompass loads runs its shipped code, and may lie outside the roots ------
OPENCOMPASS_PYTHON = (Path(os.environ.get("BUDEVAL_CACHE") or Path.home() / ".cache" / "budeval")
                      / "opencompass-venv" / "bin" / "python")
# What the rendered config makes OpenCompass do for an endpoint model (budeval/engine/render.py ``_endpoint_model``:
# ``type=OpenAISDK, path=<model>, openai_api_base=<base_url>, key=..., tokenizer_path=<tokenizer_path>``).
_RUN_OPENAISDK = """
import sys
from opencompass.models import OpenAISDK
model = OpenAISDK(path=sys.argv[1], openai_api_base="http://127.0.0.1:9/v1", key="EMPTY",
                  tokenizer_path=sys.argv[2] or None)
try:
    model.get_token_len("hello")  # what every prompt of the evaluation goes through
except Exception:
    pass
"""


def _tokenizer_with_code(folder: Path, marker: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"auto_map": {"AutoTokenizer": ["shipped.ShippedTokenizer", None]}, "tokenizer_class": "ShippedTokenizer"}))
    (folder / "shipped.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('code shipped with the tokenizer ran')\n"
        "from transformers import PreTrainedTokenizer\nclass ShippedTokenizer(PreTrainedTokenizer):\n    pass\n")


def endpoint_with(model: str, tokenizer_path: str | None) -> EvalRequest:
    source: dict[str, object] = {"type": "openai", "base_url": "https://api.example.com/v1", "model": model}
    if tokenizer_path is not None:
        source["tokenizer_path"] = tokenizer_path
    return EvalRequest.model_validate({"eval_id": "e", "model": {"name": "m", "source": source},
                                       "datasets": ["tiny_qa"]})


@pytest.mark.usefixtures("opencompass_env")  # installs the venv on a cold machine (tests/conftest.py)
def test_endpoint_tokenizer_code_is_never_run(tmp_path: Path) -> None:
    """budeval/engine/render.py and docs/opencompass.md: "a request must not run code shipped with a model"
    (``trust_remote_code=False`` for Hugging Face models). For an *endpoint* model, budeval renders ``OpenAISDK``
    with the request's ``tokenizer_path``, and OpenCompass loads it with
    ``AutoTokenizer.from_pretrained(tokenizer_path, trust_remote_code=True)`` (opencompass/models/openai_api.py
    ``_init_tokenizer``) -- no budeval setting reaches that call. The policy admits any hub id ``org/name`` there,
    so a request naming an attacker's hub repo runs the attacker's Python inside the run (locally: as the service's
    user, who can read ``/proc/<service>/environ`` -- every ``BUDEVAL_SECRET_*`` -- and ``{data_dir}/api-token``).
    Shown offline with a folder inside the models root (the same call as for a hub id). Right: the shipped code
    never runs (budeval's plugin wraps/overrides the tokenizer load, or such tokenizer_path values are refused).
    """
    root, marker = tmp_path / "models", tmp_path / "ran"
    _tokenizer_with_code(root / "tok", marker)
    settings = Settings(models_root=[root], datasets_root=[tmp_path / "ds"])
    # The fix (budeval/policy/paths.py check_endpoint_tokenizer): such a folder is refused at intake, as
    # tokenizer_path and as the served model's name OpenCompass falls back to.
    with pytest.raises(PolicyError, match="ships code"):
        check_request_paths(endpoint_with("served-model", str(root / "tok")), settings)
    with pytest.raises(PolicyError, match="ships code"):
        check_request_paths(endpoint_with(str(root / "tok"), None), settings)
    # ... and the folder really is what the breaker says: OpenCompass runs its code when it is rendered anyway.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUDEVAL_")}
    subprocess.run([str(OPENCOMPASS_PYTHON), "-c", _RUN_OPENAISDK, "served-model", str(root / "tok")],
                   env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, timeout=300, check=False)
    assert marker.exists()


@pytest.mark.parametrize("shipped", ["config", "tokenizer_config", "py", "broken"])
def test_endpoint_tokenizer_folder_with_code_is_refused(tmp_path: Path, shipped: str) -> None:
    """Each way a folder ships code is refused (an ``auto_map`` in either config, a ``*.py`` file, a config that
    cannot be read); the same folder without code is admitted."""
    root = tmp_path / "models"
    (root / "tok").mkdir(parents=True)
    (root / "tok" / "tokenizer.json").write_text("{}")
    settings = Settings(models_root=[root], datasets_root=[tmp_path / "ds"])
    check_request_paths(endpoint_with("served-model", str(root / "tok")), settings)
    if shipped == "py":
        (root / "tok" / "tokenization_x.py").write_text("")
    elif shipped == "broken":
        (root / "tok" / "config.json").write_text("{not json")
    else:
        (root / "tok" / f"{shipped}.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["x.X", None]}}))
    with pytest.raises(PolicyError, match="ships code"):
        check_request_paths(endpoint_with("served-model", str(root / "tok")), settings)
    # hub ids and opaque served-model names stay admitted (OpenCompass tries the hub, then tiktoken)
    check_request_paths(endpoint_with("org/served-model", None), settings)
    check_request_paths(endpoint_with("accounts/fw/models/x", None), settings)
    with pytest.raises(PolicyError):
        check_request_paths(endpoint_with("../../../home/other/model", None), settings)


def test_endpoint_model_name_is_checked_as_the_tokenizer_path(tmp_path: Path) -> None:
    """Issue 13 rule: "dataset/model/tokenizer paths must resolve (symlinks followed) inside configured roots".
    Without ``tokenizer_path``, OpenCompass takes the tokenizer from ``path`` = the request's ``model.source.model``
    (opencompass/models/openai_api.py: ``self.tokenizer_path = tokenizer_path or path``) and loads it with
    ``AutoTokenizer.from_pretrained(..., trust_remote_code=True)``. ``model`` is free text (256 chars) that
    budeval/policy/paths.py never looks at, so ``"model": "/home/other/secret-model"`` reads (and runs the code of)
    any folder on the host. Right: rejected at intake like a ``tokenizer_path`` outside the roots (or the renderer
    always sets a checked tokenizer_path).
    """
    outside = tmp_path / "outside" / "tok"
    outside.mkdir(parents=True)
    settings = Settings(models_root=[tmp_path / "models"], datasets_root=[tmp_path / "ds"])
    with pytest.raises(PolicyError):  # the same request with tokenizer_path=str(outside) is rejected today
        check_request_paths(endpoint_with(str(outside), None), settings)


# -- 1. credentials: one registered credential reaches another's key (local backend) -------------------------------
def test_registered_credential_cannot_read_another_credentials_key() -> None:
    """Issue 13 rule: "requests may only reference credentials an operator registered", and a key goes only to the
    hosts registered *for that credential*. Locally a reference ``{name, key}`` is looked up in
    ``BUDEVAL_SECRET_<NAME>_<KEY>`` (budeval/backends/runenv.py ``secret_env_name``), but the policy checks only
    ``name``; ``key`` is free text (``[-._a-zA-Z0-9]{1,253}``) and ``-``/``_`` both become ``_``.

    So team B, owner of credential ``team`` (allowed host: its own endpoint), names ``{"name": "team", "key":
    "a-api-key"}`` and its run gets ``BUDEVAL_SECRET_TEAM_A_API_KEY`` -- team A's key for credential ``team-a`` --
    sent to team B's host. Right: two different credentials never map to the same variable (e.g. an unambiguous
    encoding, or the key name fixed/registered per credential), so the policy decision on ``name`` holds.
    """
    registry = StaticRegistry({"team": ["models.team-b.example"], "team-a": ["api.openai.com"]})
    policy = EndpointPolicy(registry, resolver=lambda host: ["203.0.113.7"])
    policy.check(endpoint("https://models.team-b.example/v1", "team", "a-api-key"))  # admitted at intake
    assert secret_env_name("team", "a-api-key") != secret_env_name("team-a", "api-key"), (
        "credential 'team' (key 'a-api-key') reads the same variable as credential 'team-a' (key 'api-key')"
    )


def test_secret_env_names_are_one_to_one() -> None:
    """No two (name, key) pairs share a variable: names are DNS labels, keys ``[-._a-zA-Z0-9]``."""
    names = ["a", "team", "team-a", "a-b", "a--b", "x61", "team-a-api"]
    keys = ["api-key", "a-api-key", "api_key", "API-KEY", "b--k", "k", "api.key", "x6B", "b"]
    seen: dict[str, tuple[str, str]] = {}
    for name in names:
        for key in keys:
            var = secret_env_name(name, key)
            assert var not in seen, (var, seen.get(var), (name, key))
            assert var.isascii() and all(c.isalnum() or c == "_" for c in var)
            seen[var] = (name, key)
    assert secret_env_name("llm-keys", "api-key") == "BUDEVAL_SECRET_LLM_KEYS_API_KEY"  # the default stays


# -- 2. masking: common secret formats pass redact() unmasked ---------------------------------------------------
SECRET = "Zx9QwErTyUiOp4AsDfGh"  # 20 characters, no sk- prefix (Azure/other providers' keys look like this)


@pytest.mark.parametrize("text", [
    f"OPENAI_API_KEY={SECRET}",  # the very variable a run gets (budeval/backends/local.py API_KEY_ENV)
    f"HF_TOKEN=hf_{SECRET}",
    f"hf_{SECRET}",  # Hugging Face token alone (e.g. in a hub 401 message)
    f"AWS_SECRET_ACCESS_KEY={SECRET}",
    f"AKIA{SECRET[:16].upper()}",  # AWS access key id
    f"{{'api_key': '{SECRET}'}}",  # Python repr of a config/kwargs dict, as tracebacks print it
    f"key='{SECRET}'",  # OpenCompass' OpenAI model argument is named ``key``
    f'{{\\"api_key\\": \\"{SECRET}\\"}}',  # JSON inside a JSON string (an error body quoted in a log line)
    f"api_key = '{SECRET}'",
    f"Authorization: Basic {SECRET}",
    f"Authorization: Token {SECRET}",
    f"https://{SECRET}@git.example.com/repo",  # token-only userinfo
    f"https://user:pa@{SECRET}@host.example/x",  # a password containing '@'
    f"GET /v1?access_token={SECRET}",
    f"client_secret={SECRET}",
    f"DB_PASSWORD={SECRET}",
    f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.{SECRET}",  # a JWT (its signature is the secret part)
])
def test_redact_masks_common_credential_formats(text: str) -> None:
    """Issue 13 rule: "one masking function for every log excerpt"; docs/security.md says excerpts in events,
    workflow history and ClickHouse pass ``budeval.masking.redact``, and no caller passes ``known`` values, so the
    patterns are the only protection. ``\\bapi[_-]?key`` needs a word boundary, so ``OPENAI_API_KEY=...``,
    ``HF_TOKEN=...``, ``access_token=``, ``client_secret=`` (``_`` is a word character) are not matched; single-quoted
    Python reprs, ``Basic``/``Token`` schemes (only the scheme word is masked), JWTs, AWS and ``hf_`` keys are not
    covered at all. Right: the secret value does not survive ``redact``.
    """
    masked = redact(text)
    assert SECRET not in masked and SECRET.upper()[:16] not in masked, masked


def test_excerpt_is_masked_before_it_is_cut() -> None:
    """Issue 13 rule: log excerpts are masked. ``excerpt`` (and ``file_excerpt`` via ``tail``) cut the text to
    ``chars`` *then* redact: when the cut falls inside ``sk-...`` / ``Bearer ...`` / ``api_key=...``, the prefix that
    the patterns need is gone and the rest of the key is published. Where the cut falls is arbitrary (the last
    2000 characters of a log), so this happens in practice. Right: mask first, then cut (or drop a partial token).
    """
    key = "sk-" + SECRET + "abcdef"
    text = f"openai.AuthenticationError: Incorrect key, header Authorization: Bearer {key}\n"
    for chars in range(len(SECRET) + 2, len(SECRET) + 12):
        assert SECRET not in excerpt(text, chars=chars), excerpt(text, chars=chars)


def test_file_excerpt_is_masked_before_it_is_cut(tmp_path: Path) -> None:
    """Same as above for ``file_excerpt`` (the log tails put into RunState/events): ``redact(tail(path, chars))``."""
    log = tmp_path / "output.log"
    log.write_text("x" * 100 + f"\napi_key={SECRET}\n", encoding="utf-8")
    assert SECRET not in file_excerpt(log, chars=len(SECRET) + 1)


# -- 3. endpoint deny-list: metadata and loopback through IPv6 transition forms -------------------------------------
@pytest.mark.parametrize("url", [
    "http://[fd20:ce::254]/v1",  # Google Cloud metadata server over IPv6 (IPv6-only / dual-stack VMs)
    "http://[64:ff9b::a9fe:a9fe]/v1",  # NAT64 well-known prefix for 169.254.169.254 (IPv6-only clusters)
    "http://[64:ff9b::7f00:1]/v1",  # NAT64 form of 127.0.0.1
    "http://[2002:a9fe:a9fe::1]/v1",  # 6to4 embedding 169.254.169.254
    "http://[::a9fe:a9fe]/v1",  # IPv4-compatible (deprecated) form
    "http://[::ffff:0:a9fe:a9fe]/v1",  # IPv4-translated (SIIT) form
])
def test_metadata_in_ipv6_forms_is_denied(url: str) -> None:
    """Issue 13 rule: "base_url hosts checked against ... a deny-list of link-local/metadata ranges". The deny-list
    unwraps only IPv4-*mapped* addresses (``::ffff:a.b.c.d``). GCP's IPv6 metadata address ``fd20:ce::254`` (the
    analogue of AWS's ``fd00:ec2::254``, which is listed) and the NAT64/6to4/compatible/translated embeddings of
    169.254.169.254 and 127.0.0.1 are accepted, with or without a credential (here one allowed for ``*``). Right:
    refused unless an operator allows the network.
    """
    policy = EndpointPolicy(StaticRegistry({"k": ["*"]}))
    with pytest.raises(PolicyError):
        policy.check(endpoint(url, "k"))


# -- 4. host check vs the host OpenCompass connects to (URL parser differential) ------------------------------------
def test_backslash_host_is_not_matched_against_a_wildcard() -> None:
    """Issue 13 rule: a credential is sent only to its allowed hosts. The policy takes the host from
    ``urllib.parse.urlsplit`` ("evil.example\\.corp.example", which ends with ``.corp.example``) and the schema's
    ``^https?://[^\\s]+$`` lets ``\\`` through. Parsers disagree on that URL: urllib3 (``requests``, used by
    OpenCompass' ``OpenAI`` class) and WHATWG parsers end the authority at ``\\`` -> host ``evil.example``;
    httpx (the openai SDK behind ``OpenAISDK``, what budeval renders today) keeps the backslash, so today only DNS
    failing on that odd name stops the key. Defence in depth (low): a host that is not a valid DNS name or IP
    literal is refused, so the host checked is the host any client connects to.
    """
    policy = EndpointPolicy(StaticRegistry({"k": ["*.corp.example"]}), resolver=lambda host: ["10.0.0.8"])
    with pytest.raises(PolicyError):
        policy.check(endpoint("https://evil.example\\.corp.example/v1", "k"))


# -- 5. JSON depth check bypass ------------------------------------------------------------------------------------
def test_check_depth_sees_utf16_json_that_json_loads_accepts() -> None:
    """Issue 13 rule: "JSON depth/size limits with 400 answers", ``check_depth`` answering *before* any parse.
    ``json.loads(bytes)`` auto-detects UTF-16/32, and ``check_depth`` scans bytes as if UTF-8: in UTF-16-LE the
    character U+4E22 is the bytes ``22 4E`` -- a ``"`` to the string regex -- so the quote pairing shifts and 3000
    nested arrays count as "inside a string". ``json.loads`` then hits RecursionError (today only the
    ``except RecursionError`` fallbacks behind the check save the servers). Right: TooDeepError (or refuse
    non-UTF-8 bodies before parsing).
    """
    n = 3000
    raw = ('["\u4e22", ' + "[" * n + "]" * n + ', "\u4e22"]').encode("utf-16-le")
    with pytest.raises(RecursionError):
        json.loads(raw)  # proves the body is a real, too-deep JSON document to the parser the services use
    with pytest.raises(TooDeepError):
        check_depth(raw)


# -- 6. hub id vs path -----------------------------------------------------------------------------------------------
def test_hub_id_with_trailing_newline_is_not_a_hub_id() -> None:
    """docs/security.md / budeval/policy/paths.py: a hub id is ``name`` or ``org/name`` of letters, digits,
    ``_ . -``. ``HUB_ID`` ends in ``$``, which also matches before a final newline, so ``"org/name\\n"`` is accepted
    as a hub id (and the schema accepts the newline). Right: ``\\Z``/fullmatch; a control character is never a
    hub id.
    """
    assert not is_hub_id("org/name\n")


# -- 7. sidecar HTTP: Content-Length tricks --------------------------------------------------------------------------
@pytest.fixture()
def sidecar_http(tmp_path: Path) -> Iterator[int]:
    from budeval.sidecar.dapr_http import SidecarHTTPServer
    from budeval.sidecar.store import SidecarStore
    from budeval.sidecar.topics import Broker

    store = SidecarStore(tmp_path / "sidecar.db")
    server = SidecarHTTPServer("127.0.0.1", 0, Broker(store), read_timeout_s=10.0)
    server.start()
    try:
        yield server.port
    finally:
        server.shutdown()
        server.server_close()
        store.close()


def _raw_post(port: int, content_length: str, body: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as conn:
        conn.sendall(
            b"POST /v1.0/publish/pubsub/requests HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            + f"content-length: {content_length}\r\n\r\n".encode() + body
        )
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_sidecar_refuses_negative_content_length(sidecar_http: int) -> None:
    """Issue 13 rule: "connection caps / limits on both HTTP servers" (``MAX_BODY`` = 64 MiB on the sidecar).
    ``do_POST`` does ``int(content-length)``: ``-1`` passes ``length > MAX_BODY`` and ``rfile.read(-1)`` reads
    until EOF or the read deadline -- any size, into memory -- and the body is then *published* (204). Right: a
    Content-Length that is not a non-negative integer (RFC 9110 8.6) is answered 400 and nothing is published.
    """
    answer = _raw_post(sidecar_http, "-1", b'{"eval_id": "x"}')
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_sidecar_answers_bad_content_length_with_400(sidecar_http: int) -> None:
    """Developer guide: "Bad input -> clear typed error ... never a crash". A non-numeric Content-Length raises
    ValueError out of ``do_POST`` (only TimeoutError/OSError are caught): the connection is dropped with no answer
    and a traceback on the sidecar's stderr. Right: 400.
    """
    answer = _raw_post(sidecar_http, "abc", b"{}")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
