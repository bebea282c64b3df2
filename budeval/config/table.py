"""The settings table of docs/settings.md: name, variable and default of every setting, from the model itself.

tests/test_settings.py compares the table in docs/settings.md with :func:`rows`, so the documentation cannot drift
from the code; ``python -m budeval.config.table`` prints the rows (descriptions are written by hand in the docs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from budeval.config.loading import env_names
from budeval.config.settings import Settings

#: Defaults computed where the process runs, shown in words.
COMPUTED = {"data_dir": "the user's data folder"}


def _shown(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        value = value.as_posix()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def is_secret(name: str) -> bool:
    """Whether the setting is a :class:`SecretStr` (masked in repr, str, dumps and logs)."""
    return "SecretStr" in str(Settings.model_fields[name].annotation)


def rows() -> list[tuple[str, str, str, bool]]:
    """``(setting, variable, default as shown in the docs, secret)`` for every setting, in the model's order."""
    names = env_names()
    out = []
    for name, field in Settings.model_fields.items():
        default = COMPUTED.get(name) or _shown(field.get_default(call_default_factory=True))
        out.append((name, names[name], default, is_secret(name)))
    return out


if __name__ == "__main__":
    for name, variable, default, secret in rows():
        print(f"| `{name}` | `{variable}` | `{default}` | {'yes' if secret else ''} |")
