"""Where a running ``budeval serve`` lives: ``{data_dir}/serve.json`` (written at start, removed at stop; read by the
CLI's ``submit``, ``status``, ``cancel`` and the read commands to find the service and its sidecar) and the addresses
``serve`` logs (API, UI, docs, data dir, store without password, archive, results)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from budeval.config import Settings

SERVE_FILE = "serve.json"
TOKEN_FILE = "api-token"  # noqa: S105 (a file name)


class ServiceAddress(Protocol):
    """What of a running service these functions read (budeval.service.runtime.Service has it)."""

    settings: Settings
    api_url: str
    mode: str
    sidecar_pid: int | None
    dapr_http_port: int | None
    dapr_grpc_port: int | None


def where_it_lives(service: ServiceAddress) -> dict[str, str]:
    """Where the running service answers and keeps its data: API, UI, API docs, data dir, store (no password),
    archive, results. Logged by ``serve`` (and printed at a terminal)."""
    from budeval.storage.factory import as_archive_url, as_store_dsn, redact_dsn

    settings = service.settings
    return {
        "api": service.api_url,
        "ui": f"{service.api_url}/ui/",
        "docs": f"{service.api_url}/docs" if settings.docs_enabled else "off",
        "data_dir": str(settings.data_dir.absolute()),
        "store": redact_dsn(as_store_dsn(settings.resolved_store_dsn())),
        "archive": as_archive_url(settings.resolved_archive_url()),
        "results": str(settings.resolved_results_root().absolute()),
    }


def write_serve_file(service: ServiceAddress) -> Path:
    """Write ``{data_dir}/serve.json`` atomically (temp file, then rename): pid, API and UI URLs, the sidecar's mode,
    pid and ports, the topics, and the store this service holds (no password). Returns its path."""
    places = where_it_lives(service)
    path = service.settings.data_dir / SERVE_FILE
    info = {
        "pid": os.getpid(),
        "api_url": service.api_url,
        "ui_url": places["ui"],
        "sidecar": service.mode,
        "sidecar_pid": service.sidecar_pid,
        "dapr_http_port": service.dapr_http_port,
        "dapr_grpc_port": service.dapr_grpc_port,
        "pubsub_name": service.settings.pubsub_name,
        "request_topic": service.settings.request_topic,
        "events_topic": service.settings.events_topic,
        # which store this service holds (no password): a read command finding it locked asks this service
        "store": places["store"],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_serve_file(data_dir: Path) -> dict[str, Any] | None:
    """``{data_dir}/serve.json`` as a dict; None when missing or unreadable."""
    try:
        info = json.loads((data_dir / SERVE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None
