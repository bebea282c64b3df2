"""Settings of budeval: one pydantic-settings model, read from flags, ``BUDEVAL_*`` variables and a settings file.

Embedded default: everything under one data directory (``BUDEVAL_DATA_DIR``, default the user's data dir): chDB
store, folder archive, results, SQLite state of the embedded sidecar. In a cluster the Helm chart sets DSNs and URLs
for ClickHouse, S3 and the Kubernetes backend; the code is the same. Every setting, its variable and its default:
docs/settings.md.
"""

from __future__ import annotations

from budeval.config.loading import (
    cli_settings,
    credential_secret,
    env_names,
    load_settings,
    parse_flags,
    point_dapr_sdk_at,
    process_environment,
)
from budeval.config.settings import Settings, default, default_cache_dir, default_data_dir, reveal
from budeval.config.sources import SETTINGS_FILE_ENV

__all__ = [
    "SETTINGS_FILE_ENV",
    "Settings",
    "cli_settings",
    "credential_secret",
    "default",
    "default_cache_dir",
    "default_data_dir",
    "env_names",
    "load_settings",
    "parse_flags",
    "point_dapr_sdk_at",
    "process_environment",
    "reveal",
]
