"""Where the running service is, for every command that talks to it (``submit``, ``status``, ``cancel`` and the read
commands when the service holds the embedded store): its HTTP API, its token and its Dapr sidecar.

Order: the settings (``api_url``; ``DAPR_HTTP_ENDPOINT``/``DAPR_HTTP_PORT``), else the running ``budeval serve``'s
``{data_dir}/serve.json``, else ``http://127.0.0.1:{port}``. The token: ``api_token`` / ``api_token_file``, else the
embedded mode's ``{data_dir}/api-token``.
"""

from __future__ import annotations

import os
from typing import Any

from budeval.config import Settings, reveal


def serve_info(settings: Settings) -> dict[str, Any]:
    """``{data_dir}/serve.json`` of the running service (``{}`` when there is none, or when the file is stale: the
    process it names is gone -- its ports may be another program's by now, e.g. another data dir's service)."""
    info = _serve_file(settings)
    return info if pid_alive(info.get("pid")) else {}


def stale_serve_pid(settings: Settings) -> int | None:
    """The process id a stale ``serve.json`` names (a service that died without removing it), else None."""
    pid = _serve_file(settings).get("pid")
    return pid if isinstance(pid, int) and not pid_alive(pid) else None


def _serve_file(settings: Settings) -> dict[str, Any]:
    from budeval.service.servefile import read_serve_file

    return read_serve_file(settings.data_dir) or {}


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id exists (signal 0); False for anything that is not a positive int."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def service_starting(settings: Settings) -> bool:
    """A ``budeval serve`` of this data dir has written its ``serve.json`` and its process is alive (it may still
    be starting); a stale file of a process that died does not count."""
    return pid_alive(serve_info(settings).get("pid"))


def api_url(settings: Settings) -> str:
    """The service's HTTP API base URL, without a trailing slash."""
    explicit = settings.api_url.strip()
    if explicit:
        return explicit.rstrip("/")
    info = serve_info(settings)
    return str(info.get("api_url") or f"http://127.0.0.1:{settings.port}").rstrip("/")


def api_token(settings: Settings) -> str | None:
    """The API's bearer token: the settings', else the embedded mode's generated ``{data_dir}/api-token``."""
    from budeval.service.auth import load_api_token
    from budeval.service.servefile import TOKEN_FILE

    token = load_api_token(settings)
    if token:
        return token
    local = settings.data_dir / TOKEN_FILE
    return local.read_text(encoding="utf-8").strip() if local.is_file() else None


def sidecar_url(settings: Settings) -> str | None:
    """The Dapr HTTP API: ``DAPR_HTTP_ENDPOINT``/``DAPR_HTTP_PORT`` if set, else the running service's sidecar."""
    endpoint = settings.dapr_http_endpoint.strip()
    if endpoint:
        return endpoint.rstrip("/")
    port = settings.dapr_http_port
    if port:
        return f"http://127.0.0.1:{port}"
    info = serve_info(settings)
    return f"http://127.0.0.1:{info['dapr_http_port']}" if info.get("dapr_http_port") else None


def dapr_headers(settings: Settings) -> dict[str, str]:
    """Dapr's API token header, when one is set."""
    token = (reveal(settings.dapr_api_token) or "").strip()
    return {"dapr-api-token": token} if token else {}
