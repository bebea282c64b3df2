"""Where settings come from, highest first: flags (init arguments), the environment, a settings file, defaults.

The settings file is named by ``BUDEVAL_SETTINGS_FILE`` (or ``budeval --settings FILE``) and read by the source
pydantic-settings has for its kind, chosen by suffix: ``.yaml``/``.yml``, ``.json``, ``.toml`` (keys: field names,
e.g. ``store_dsn``), anything else a dotenv file (``BUDEVAL_STORE_DSN=...`` lines). Unknown keys in it are errors.
Which environment and file a load reads is set per load (:func:`reading`), so tests and ``Settings.from_env(env)``
can hand in a mapping instead of ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

#: The variable naming the settings file.
SETTINGS_FILE_ENV = "BUDEVAL_SETTINGS_FILE"
FILE_KINDS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}


@dataclass(frozen=True)
class Origin:
    """The environment (variable name -> value) and the settings file (None: none) one load reads."""

    environ: Mapping[str, str]
    file: Path | None


_ORIGIN: ContextVar[Origin | None] = ContextVar("budeval_settings_origin", default=None)


@contextmanager
def reading(origin: Origin) -> Iterator[None]:
    """Settings built inside this block read ``origin`` instead of ``os.environ`` / ``BUDEVAL_SETTINGS_FILE``."""
    token = _ORIGIN.set(origin)
    try:
        yield
    finally:
        _ORIGIN.reset(token)


def current_origin() -> Origin:
    """The origin of the load in progress, else this process's environment and its ``BUDEVAL_SETTINGS_FILE``."""
    origin = _ORIGIN.get()
    if origin is not None:
        return origin
    environ = dict(os.environ)
    named = environ.get(SETTINGS_FILE_ENV, "").strip()
    return Origin(environ, Path(named) if named else None)


class MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    """The pydantic-settings source for a settings file of this suffix (see the module docstring)."""
    kind = FILE_KINDS.get(path.suffix.lower())
    if kind == "yaml":
        return YamlConfigSettingsSource(settings_cls, yaml_file=path)
    if kind == "json":
        return JsonConfigSettingsSource(settings_cls, json_file=path)
    if kind == "toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    return DotEnvSettingsSource(settings_cls, env_file=path)


def settings_sources(
    settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource
) -> tuple[PydanticBaseSettingsSource, ...]:
    """Flags (the init arguments) > environment > settings file; defaults come last by themselves."""
    origin = current_origin()
    sources: list[PydanticBaseSettingsSource] = [init_settings, MappingEnvSource(settings_cls, origin.environ)]
    if origin.file is not None:
        if not origin.file.is_file():
            raise FileNotFoundError(f"the settings file {origin.file} ({SETTINGS_FILE_ENV}) does not exist")
        sources.append(file_source(settings_cls, origin.file))
    return tuple(sources)
