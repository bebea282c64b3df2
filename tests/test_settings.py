"""The one Settings: from flags, environment variables and settings files, in that precedence; secrets never shown;
a bad value is a one-line ConfigError naming its variable; no ``os.environ`` outside budeval/config; docs in step."""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import SecretStr

from budeval.config import (
    Settings,
    cli_settings,
    credential_secret,
    env_names,
    load_settings,
    parse_flags,
    reveal,
)
from budeval.config.table import rows
from budeval.errors import ConfigError, ValidationError
from budeval.logs import configure, get_logger

ROOT = Path(__file__).resolve().parents[1]

#: Every variable budeval read before the settings were one model (the old ``Settings`` fields, the variables read
#: elsewhere, Dapr's and the hub's): each must still be honoured.
_OLD_FIELDS = (
    "data_dir", "store_dsn", "store_linger_ms", "archive_url", "results_root", "backend", "namespace",
    "runner_image", "runner_service_account", "results_pvc", "opencompass_python", "engine_version",
    "pubsub_name", "request_topic", "events_topic", "max_parallel_runs", "worker_threads", "suites_dir",
    "activity_retry_window_s", "poll_initial_s", "poll_max_s", "unschedulable_after_s",
    "default_gpu_resource_name", "default_node_selector", "default_tolerations", "default_queue",
    "default_priority_class", "host", "port", "sidecar", "sidecar_grpc_port", "sidecar_http_port",
    "credentials", "credential_source", "credentials_file", "endpoint_allowed_networks", "datasets_root",
    "models_root", "run_env_passthrough", "require_app_token", "docs_enabled", "metrics_access",
    "http_read_timeout_s", "http_max_connections", "max_json_depth", "api_token", "api_token_file", "log_level",
    "api_url", "s3_endpoint", "s3_access_key", "s3_secret_key", "fault_kill_at", "fault_marker_dir",
)
LEGACY = {f"BUDEVAL_{n.upper()}" for n in _OLD_FIELDS} | {
    "APP_API_TOKEN", "DAPR_GRPC_PORT", "DAPR_HTTP_PORT", "DAPR_GRPC_ENDPOINT", "DAPR_HTTP_ENDPOINT", "DAPR_API_TOKEN",
    "HF_ENDPOINT", "HF_HUB_OFFLINE", "COMPASS_DATA_CACHE",
}

#: Values for the settings whose type alone does not say what a valid, non-default value is.
SPECIAL = {
    "default_node_selector": ('{"pool": "gpu"}', {"pool": "gpu"}),
    "default_tolerations": ('[{"key": "gpu", "operator": "Exists"}]', [{"key": "gpu", "operator": "Exists"}]),
    "credentials": ('{"team-a": ["api.openai.com"]}', {"team-a": ["api.openai.com"]}),
    "endpoint_allowed_networks": ("10.0.0.0/8, 192.168.0.0/16", ["10.0.0.0/8", "192.168.0.0/16"]),
    "run_env_passthrough": ('["MY_*", "OTHER"]', ["MY_*", "OTHER"]),
    "datasets_root": (f"/data/a{os.pathsep}/data/b", [Path("/data/a"), Path("/data/b")]),
    "models_root": ("/models", [Path("/models")]),
    "kube_watch_backoffs_s": ("[1, 2.5]", [1.0, 2.5]),
}


def _value_for(name: str) -> tuple[str, Any]:
    """A valid value of setting ``name`` that differs from its default: (as a variable, as read)."""
    if name in SPECIAL:
        return SPECIAL[name]
    field = Settings.model_fields[name]
    annotation = field.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    default = field.get_default(call_default_factory=True)
    if typing.get_origin(annotation) is Literal:
        choice = next(c for c in typing.get_args(annotation) if c != default)
        return str(choice), choice
    if annotation is bool:
        return ("false", False) if default else ("true", True)
    if annotation is int:
        return "7", 7
    if annotation is float:
        return "7.5", 7.5
    if annotation is SecretStr:
        return f"secret-of-{name}", f"secret-of-{name}"
    if annotation is Path:
        return f"/tmp/{name}", Path(f"/tmp/{name}")
    assert annotation is str, (name, annotation)
    return f"value-of-{name}", f"value-of-{name}"


def _read(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


# -- every variable is honoured ----------------------------------------------------------------------------------------
def test_every_setting_is_read_from_its_variable() -> None:
    names = env_names()
    environ = {names[name]: _value_for(name)[0] for name in Settings.model_fields}
    settings = Settings.from_env(environ)
    for name in Settings.model_fields:
        assert _read(getattr(settings, name)) == _value_for(name)[1], name


def test_every_variable_read_before_is_still_honoured() -> None:
    assert sorted(LEGACY - set(env_names().values())) == []


def test_json_and_list_variables() -> None:
    settings = Settings.from_env({
        "BUDEVAL_DEFAULT_NODE_SELECTOR": '{"a": "b"}', "BUDEVAL_ENDPOINT_ALLOWED_NETWORKS": '["10.0.0.0/8"]',
        "BUDEVAL_RUN_ENV_PASSTHROUGH": "A, B*", "BUDEVAL_CREDENTIALS": "", "BUDEVAL_PORT": "",
    })
    assert settings.default_node_selector == {"a": "b"} and settings.endpoint_allowed_networks == ["10.0.0.0/8"]
    assert settings.run_env_passthrough == ["A", "B*"]
    assert settings.credentials == {} and settings.port == 8080  # empty: unset
    with pytest.raises(ConfigError, match=r"BUDEVAL_DEFAULT_TOLERATIONS.*not valid JSON"):
        Settings.from_env({"BUDEVAL_DEFAULT_TOLERATIONS": "[{"})


# -- files and precedence ----------------------------------------------------------------------------------------------
FILES = {
    "s.yaml": "port: 9001\nstore_linger_ms: 5\ndefault_node_selector: {pool: gpu}\nmodels_root: [/m1, /m2]\n",
    "s.json": '{"port": 9001, "store_linger_ms": 5, "default_node_selector": {"pool": "gpu"},'
              ' "models_root": ["/m1", "/m2"]}',
    "s.toml": 'port = 9001\nstore_linger_ms = 5\nmodels_root = ["/m1", "/m2"]\n[default_node_selector]\npool = "gpu"\n',
    "s.env": "BUDEVAL_PORT=9001\nBUDEVAL_STORE_LINGER_MS=5\nBUDEVAL_DEFAULT_NODE_SELECTOR='{\"pool\": \"gpu\"}'\n"
             f"BUDEVAL_MODELS_ROOT=/m1{os.pathsep}/m2\n",
}


@pytest.mark.parametrize("name", FILES)
def test_settings_file_of_each_kind(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(FILES[name])
    settings = load_settings(environ={"BUDEVAL_SETTINGS_FILE": str(path)})
    assert settings.port == 9001 and settings.store_linger_ms == 5
    assert settings.default_node_selector == {"pool": "gpu"} and settings.models_root == [Path("/m1"), Path("/m2")]


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("port: 9001\nnamespace: from-file\nhost: 0.0.0.0\n")
    environ = {"BUDEVAL_SETTINGS_FILE": str(path), "BUDEVAL_PORT": "9002", "BUDEVAL_NAMESPACE": "from-env"}
    settings = load_settings(environ=environ, flags={"port": "9003"})
    got = (settings.port, settings.namespace, settings.host, settings.backend)
    assert got == (9003, "from-env", "0.0.0.0", "local")
    assert load_settings(environ=environ).port == 9002
    other = tmp_path / "other.json"
    other.write_text('{"host": "10.1.1.1"}')
    assert load_settings(environ=environ, settings_file=other).host == "10.1.1.1"  # --settings over the variable


def test_cli_flags_and_file_reach_every_load(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("namespace: from-file\n")
    with cli_settings(parse_flags(["port=9100", "BUDEVAL_BACKEND=kubernetes"]), path):
        settings = Settings.from_env({})
    assert (settings.port, settings.backend, settings.namespace) == (9100, "kubernetes", "from-file")
    assert Settings.from_env({}).port == 8080  # gone after the command


# -- bad values: one typed error that names the variable, never the value -------------------------------------------
@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"BUDEVAL_PORT": "not-a-port-s3cr3t"}, "BUDEVAL_PORT"),
        ({"BUDEVAL_PORT": "99999"}, "BUDEVAL_PORT"),
        ({"BUDEVAL_BACKEND": "nomad"}, "BUDEVAL_BACKEND"),
        ({"BUDEVAL_CREDENTIALS": "{s3cr3t"}, "BUDEVAL_CREDENTIALS"),
        ({"BUDEVAL_KUBE_WATCH_TIMEOUT_S": "-1"}, "BUDEVAL_KUBE_WATCH_TIMEOUT_S"),
        ({"DAPR_GRPC_PORT": "s3cr3t"}, "DAPR_GRPC_PORT"),
        ({"BUDEVAL_SETTINGS_FILE": "/nowhere/s3cr3t.yaml"}, "BUDEVAL_SETTINGS_FILE"),
    ],
)
def test_invalid_value_is_a_config_error_naming_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)
    assert isinstance(caught.value, ValidationError) and caught.value.variable == variable
    assert variable in str(caught.value) and "\n" not in str(caught.value)
    if "SETTINGS_FILE" not in variable:
        assert "s3cr3t" not in str(caught.value)


def test_bad_settings_files_and_flags(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("prot: 9000\n")
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        load_settings(environ={}, settings_file=typo)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ConfigError, match="cannot read the settings file"):
        load_settings(environ={}, settings_file=broken)
    with pytest.raises(ConfigError, match="unknown setting 'nope'"):
        parse_flags(["nope=1"])
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_flags(["port"])


def test_serve_with_a_bad_value_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "BUDEVAL_DATA_DIR": str(tmp_path), "BUDEVAL_HTTP_MAX_CONNECTIONS": "0"}
    done = subprocess.run([sys.executable, "-m", "budeval.cli.main", "serve"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "budeval: error: invalid setting http_max_connections (BUDEVAL_HTTP_MAX_CONNECTIONS): "
        "Input should be greater than or equal to 1"
    ]
    flagged = subprocess.run([sys.executable, "-m", "budeval.cli.main", "--set", "port=-1", "serve"], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert flagged.returncode == 1 and len(flagged.stderr.splitlines()) == 1 and "port" in flagged.stderr


# -- secrets -----------------------------------------------------------------------------------------------------------
SECRETS = {
    "BUDEVAL_STORE_DSN": "http://budeval:dsn-pa55@clickhouse:8123/db", "BUDEVAL_S3_ACCESS_KEY": "s3-access-A1",
    "BUDEVAL_S3_SECRET_KEY": "s3-secret-B2", "BUDEVAL_API_TOKEN": "api-token-C3", "APP_API_TOKEN": "app-token-D4",
    "DAPR_API_TOKEN": "dapr-token-E5",
}
SHOWN_PARTS = ("dsn-pa55", "s3-access-A1", "s3-secret-B2", "api-token-C3", "app-token-D4", "dapr-token-E5")


def test_secrets_never_in_repr_str_dumps_or_logs(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings.from_env(SECRETS)
    configure("INFO")
    get_logger(component="test").info("settings", settings=settings, dump=settings.model_dump())
    logging.getLogger("budeval.test").warning("settings %s", settings)
    shown = "\n".join([repr(settings), str(settings), settings.model_dump_json(), json.dumps(
        settings.model_dump(mode="json")), str(settings.model_dump()), capsys.readouterr().err])
    for secret in SHOWN_PARTS:
        assert secret not in shown
    assert "**********" in settings.model_dump_json()
    # ... and the code that sends them gets the values
    assert settings.resolved_store_dsn() == SECRETS["BUDEVAL_STORE_DSN"]
    assert reveal(settings.s3_secret_key) == "s3-secret-B2" and reveal(None) is None


def test_every_secret_is_a_secretstr() -> None:
    secret = {name for name, _, _, is_secret in rows() if is_secret}
    assert secret == {"store_dsn", "s3_access_key", "s3_secret_key", "api_token", "app_api_token", "dapr_api_token"}


def test_credential_values_are_read_as_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDEVAL_SECRET_TEAM_A_API_KEY", "sk-team-a")
    value = credential_secret("BUDEVAL_SECRET_TEAM_A_API_KEY")
    assert value is not None and value.get_secret_value() == "sk-team-a" and "sk-team-a" not in repr(value)
    monkeypatch.setenv("BUDEVAL_SECRET_TEAM_A_API_KEY", "")
    assert credential_secret("BUDEVAL_SECRET_TEAM_A_API_KEY") is None


# -- one place reads the environment ----------------------------------------------------------------------------------
#: Modules allowed to read the process environment: the config package (and runenv, which builds a child's
#: environment, though today it gets it from budeval.config.process_environment), and the entry point of the
#: embedded sidecar run as its own program (``python -m budeval.sidecar``): it stands in for daprd, reads
#: ``APP_API_TOKEN`` as daprd does, and may not import budeval.config (import-linter contract).
#: ... and the plugin code that runs inside OpenCompass's process (no budeval, no Settings there).
ALLOWED = ("budeval/config/", "budeval/backends/runenv.py", "budeval/sidecar/embedded.py",
           "budeval/engine/opencompass_plugin/")


def _is_environment_access(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in ("environ", "environb", "getenv", "putenv", "unsetenv") and isinstance(
            node.value, ast.Name) and node.value.id == "os"
    if isinstance(node, ast.ImportFrom):
        return node.module == "os" and any(a.name in ("environ", "environb", "getenv") for a in node.names)
    return False


def _environment_reads(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.lineno for node in ast.walk(tree) if _is_environment_access(node)]  # type: ignore[attr-defined]


def test_no_environment_reads_outside_config() -> None:
    found = []
    for path in sorted((ROOT / "budeval").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(ALLOWED) or "/_proto/" in rel:
            continue
        found += [f"{rel}:{line}" for line in _environment_reads(path)]
    assert found == [], "read settings through budeval.config, not os.environ"


def test_the_environment_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import os\nfrom os import getenv\na = os.environ.get('X')\nb = os.getenv('Y')\n"
                      "c = 'os.environ in a string is fine'\n")
    assert sorted(_environment_reads(sample)) == [2, 3, 4]


# -- the docs list every setting as the code has it ------------------------------------------------------------------
def test_docs_table_matches_the_model() -> None:
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    documented = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 5:
            documented.append((cells[0].strip("`"), cells[1].strip("`"), cells[2][1:-1], cells[3] == "yes"))
            assert cells[4], f"no description for {cells[0]}"
    assert documented == rows()


def test_docs_name_the_precedence() -> None:
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert re.search(r"1\. \*\*Flags\*\*.*2\. \*\*Environment variables\*\*.*3\. \*\*A settings file\*\*.*"
                     r"4\. \*\*Defaults\*\*", text, re.S)


# -- the activities' retry policy comes from the settings copied into the workflow input -----------------------------
def test_activity_retry_policy_from_settings() -> None:
    from datetime import timedelta

    from budeval.workflow.models import WorkflowInput
    from budeval.workflow.policies import transient

    default = Settings.from_env({})
    policy = transient(10, default.activity_retry_first_s, default.activity_retry_max_s)
    assert (policy.first_retry_interval, policy.max_number_of_attempts) == (timedelta(seconds=1), 5)  # 1+2+4+8
    assert policy.max_retry_interval == timedelta(seconds=60)
    tuned = Settings.from_env({"BUDEVAL_ACTIVITY_RETRY_FIRST_S": "2", "BUDEVAL_ACTIVITY_RETRY_MAX_S": "4"})
    policy = transient(10, tuned.activity_retry_first_s, tuned.activity_retry_max_s)  # waits 2, 4, 4
    assert (policy.first_retry_interval, policy.max_number_of_attempts) == (timedelta(seconds=2), 4)
    assert policy.max_retry_interval == timedelta(seconds=4)
    # an input recorded before these were settings replays with the old policy
    old = WorkflowInput.model_validate({"request": {"eval_id": "e1", "model": {"name": "m", "source": {
        "type": "huggingface", "path": "org/m"}}, "datasets": ["tiny_qa"]}, "received_at": "2026-01-01T00:00:00+00:00"})
    legacy = transient(old.retry_window_s, old.retry_first_s, old.retry_max_s)
    assert (legacy.first_retry_interval, legacy.max_number_of_attempts) == (timedelta(seconds=1), 8)
