"""Loading the settings with errors that name the setting: :func:`load_settings`, the CLI's flags, the process env.

Precedence, highest first: flags (``budeval --set NAME=VALUE``, or ``flags=``), environment variables (``BUDEVAL_*``
and the few foreign names such as ``APP_API_TOKEN``), the settings file (``BUDEVAL_SETTINGS_FILE`` or ``budeval
--settings FILE``), defaults. A bad value raises :class:`budeval.errors.ConfigError` naming the setting and its
variable, never the value (it may be a secret).

This package is the only place in budeval that reads ``os.environ`` (checked by tests/test_settings.py; the one
exception is the embedded sidecar run as its own program, which reads ``APP_API_TOKEN`` as daprd does): besides the
settings, :func:`credential_secret` (a run's API key, read when the run starts), :func:`process_environment` (what
budeval/backends/runenv.py filters for a child process) and :func:`point_dapr_sdk_at` (the Dapr SDK reads its
sidecar's address from the environment).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import SecretStr

from budeval.config.settings import ENV_PREFIX, Settings
from budeval.config.sources import SETTINGS_FILE_ENV, Origin, reading
from budeval.errors import ConfigError

_cli_flags: dict[str, str] = {}
_cli_file: list[Path] = []


def env_names() -> dict[str, str]:
    """Field name -> the environment variable it is read from (``BUDEVAL_<FIELD>``, or its foreign name)."""
    names: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, pydantic.AliasChoices):
            names[name] = next(str(c) for c in alias.choices if str(c).isupper())
        else:
            names[name] = f"{ENV_PREFIX}{name.upper()}"
    return names


def field_name(key: str) -> str:
    """A flag's setting name: the field name, or its variable (``BUDEVAL_STORE_DSN`` -> ``store_dsn``)."""
    wanted = key.strip()
    for name, variable in env_names().items():
        if wanted.lower() in (name, variable.lower()):
            return name
    raise ConfigError(f"unknown setting {key!r} (see docs/settings.md)", variable=key)


def parse_flags(pairs: list[str]) -> dict[str, str]:
    """``["port=9000", "BUDEVAL_BACKEND=local"]`` -> ``{"port": "9000", "backend": "local"}``."""
    flags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set takes NAME=VALUE, got {key!r}")
        flags[field_name(key)] = value
    return flags


@contextmanager
def cli_settings(flags: Mapping[str, str], settings_file: Path | None) -> Iterator[None]:
    """The CLI's ``--set`` flags and ``--settings`` file apply to every load of settings inside this block."""
    saved_flags, saved_file = dict(_cli_flags), list(_cli_file)
    _cli_flags.update(flags)
    if settings_file is not None:
        _cli_file[:] = [settings_file]
    try:
        yield
    finally:
        _cli_flags.clear()
        _cli_flags.update(saved_flags)
        _cli_file[:] = saved_file


def load_settings(
    *,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    settings_file: Path | None = None,
) -> Settings:
    """The settings from ``flags`` (field names; plus the CLI's), ``environ`` (default ``os.environ``), the settings
    file (``settings_file``, else the CLI's ``--settings``, else ``BUDEVAL_SETTINGS_FILE`` of ``environ``) and the
    defaults, in that order of precedence.

    Raises :class:`ConfigError` for an unknown flag, a missing or unreadable settings file, or a value that is not
    valid (the message names the setting and its variable, never the value).
    """
    env: Mapping[str, str] = dict(os.environ) if environ is None else environ
    file = settings_file or (_cli_file[0] if _cli_file else None)
    if file is None and env.get(SETTINGS_FILE_ENV, "").strip():
        file = Path(env[SETTINGS_FILE_ENV].strip())
    given = {field_name(k): v for k, v in {**_cli_flags, **(flags or {})}.items()}
    try:
        with reading(Origin(env, file)):
            return Settings(**given)
    except pydantic.ValidationError as exc:
        raise _config_error(exc, file) from None
    except FileNotFoundError as exc:
        raise ConfigError(str(exc), variable=SETTINGS_FILE_ENV) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the settings file {file}: {type(exc).__name__}: {_first_line(exc)}",
                          variable=SETTINGS_FILE_ENV) from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _config_error(exc: pydantic.ValidationError, file: Path | None) -> ConfigError:
    names = env_names()
    problems: list[str] = []
    first: str | None = None
    for error in exc.errors(include_input=False, include_url=False):
        loc = str(error["loc"][0]) if error["loc"] else ""
        name = field_name(loc) if loc.lower() in names or loc.lower() in {v.lower() for v in names.values()} else loc
        variable = names.get(name)
        if error["type"] == "extra_forbidden":
            where = f" in the settings file {file}" if file is not None else ""
            problems.append(f"unknown setting {loc!r}{where}")
        else:
            problems.append(f"invalid setting {name} ({variable}): {error['msg']}")
        first = first or variable or loc
    return ConfigError("; ".join(problems), variable=first)


def credential_secret(variable: str) -> SecretStr | None:
    """A credential's key from this process's environment (``BUDEVAL_SECRET_*``, named by
    ``budeval.backends.runenv.secret_env_name``), read each time (a run reads its key when it starts); None if unset
    or empty."""
    value = os.environ.get(variable, "")
    return SecretStr(value) if value else None


def process_environment() -> dict[str, str]:
    """A copy of this process's environment, for budeval/backends/runenv.py to filter into a child's (never passed
    on whole: it holds the service's secrets)."""
    return dict(os.environ)


def point_dapr_sdk_at(grpc_port: int, http_port: int, host: str = "127.0.0.1") -> None:
    """Point the Dapr SDK (which reads its sidecar's address from the environment) at the embedded sidecar."""
    os.environ["DAPR_RUNTIME_HOST"] = host
    os.environ["DAPR_GRPC_PORT"] = str(grpc_port)
    os.environ["DAPR_HTTP_PORT"] = str(http_port)
    for name in ("DAPR_GRPC_ENDPOINT", "DAPR_HTTP_ENDPOINT"):
        os.environ.pop(name, None)
