"""Settings of budeval, read from ``BUDEVAL_*`` environment variables with defaults for the embedded mode.

Embedded default: everything under one data directory (``BUDEVAL_DATA_DIR``, default the user's data dir):
chDB store, folder archive, results, SQLite state of the embedded sidecar. In a cluster the Helm chart sets DSNs
and URLs for ClickHouse, S3 and the Kubernetes backend; the code is the same.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, field_validator


def default_data_dir() -> Path:
    return Path(os.environ.get("BUDEVAL_DATA_DIR") or platformdirs.user_data_dir("budeval"))


def default_cache_dir() -> Path:
    """Large reusable downloads and builds (OpenCompass venv, model, kube binaries): outside any checkout."""
    return Path(os.environ.get("BUDEVAL_CACHE") or Path.home() / ".cache" / "budeval")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    store_dsn: str = ""  # default: chdb:///{data_dir}/clickhouse
    #: How long the store's small concurrent writes wait to share one insert while it is busy (0: never); see
    #: budeval/storage/groupcommit.py. Adds at most this much to a write, only under load.
    store_linger_ms: float = Field(default=50.0, ge=0, le=1000)
    archive_url: str = ""  # default: file://{data_dir}/archive ; or s3://bucket?endpoint=http://host:port
    results_root: Path | None = None  # default: {data_dir}/results
    backend: Literal["local", "kubernetes"] = "local"
    namespace: str = "budeval"
    runner_image: str = "ghcr.io/budeval/opencompass-runner:0.5.4"
    runner_service_account: str = "budeval-runner"
    results_pvc: str = "budeval-results"
    #: Python interpreter of the OpenCompass venv (local backend); OpenCompass needs numpy<2, so it lives apart.
    opencompass_python: str = ""
    engine_version: str = "0.5.4"
    pubsub_name: str = "budeval-pubsub"
    request_topic: str = "budeval.requests"
    events_topic: str = "budeval.events"
    max_parallel_runs: int = 2
    #: Threads of the workflow worker's activity pool (and of its orchestrator pool). Activities mostly wait (store,
    #: archive uploads and fsyncs, the backend's API): with the SDK's default of cores + 4, six slow S3 uploads on a
    #: two-core pod would hold up every other evaluation's steps. Waiting threads are cheap, and more writers in
    #: flight let the store batch their rows (group commit). On the CPU-bound benchmark 6 and 32 measure the same.
    worker_threads: int = Field(default=32, ge=1, le=512)
    #: Folder of suite YAML files (``workflows/``); default: ``workflows/`` beside the package in a checkout.
    suites_dir: Path | None = None
    #: Seconds the workflow's activities keep retrying transient failures (archive, store, broker, API server down)
    #: with backoff (1 s doubling to 60 s) before the step fails; budeval/workflow/policies.py.
    activity_retry_window_s: float = Field(default=1800.0, ge=0, le=7 * 24 * 3600)
    #: Seconds between rounds of the service's housekeeping (budeval/service/housekeeping.py): archive evaluations
    #: left ``archive_pending``, correct rows left ``running`` whose workflow ended or is gone. 0: off.
    housekeeping_interval_s: float = Field(default=60.0, ge=0, le=24 * 3600)
    poll_initial_s: float = 5.0
    poll_max_s: float = 60.0
    unschedulable_after_s: float = 600.0
    # -- cluster defaults for runs whose request leaves them unset (the chart's runner values) --
    default_gpu_resource_name: str = "nvidia.com/gpu"
    default_node_selector: dict[str, str] = Field(default_factory=dict)  # env: a JSON object
    default_tolerations: list[dict[str, Any]] = Field(default_factory=list)  # env: a JSON list of tolerations
    default_queue: str | None = None  # Kueue LocalQueue name
    default_priority_class: str | None = None
    # -- the service (``budeval serve``) --
    #: Address the HTTP API / Dapr app listens on; a cluster sets ``0.0.0.0`` (the Dapr app port is ``port``).
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: ``embedded``: start the in-process Dapr-compatible sidecar; ``process``: the same sidecar as a child process
    #: (its own interpreter: faster on more than one core; dies with the service); ``external``: talk to daprd
    #: (DAPR_GRPC_PORT ...); ``auto``: external when the environment names a sidecar (DAPR_GRPC_PORT /
    #: DAPR_GRPC_ENDPOINT), else ``process`` on Linux and ``embedded`` elsewhere.
    sidecar: Literal["auto", "embedded", "process", "external"] = "auto"
    #: Ports of the embedded sidecar (0: any free port; ``budeval submit`` finds them in ``{data_dir}/serve.json``).
    sidecar_grpc_port: int = Field(default=0, ge=0, le=65535)
    sidecar_http_port: int = Field(default=0, ge=0, le=65535)
    # -- security (docs/security.md) --
    #: Credentials requests may reference, by name, with the endpoint hosts each may be sent to; env: a JSON object
    #: ``{"team-a-openai": ["api.openai.com", "*.openai.azure.com"]}``. Local backend only (its key values come from
    #: ``BUDEVAL_SECRET_<NAME>_API_KEY`` / ``BUDEVAL_SECRET_<NAME>__<KEY>``, runenv.secret_env_name); on Kubernetes
    #: the registry is the Secrets labelled
    #: ``budeval.io/credential=true`` (hosts in the annotation ``budeval.io/allowed-hosts``).
    credentials: dict[str, list[str]] = Field(default_factory=dict)
    #: Where the registry of credentials is read: ``settings`` (``credentials`` / ``credentials_file``, on any
    #: backend) or, on Kubernetes, ``secrets`` (Secrets labelled ``budeval.io/credential=true``; the service's Role
    #: then needs ``get`` on Secrets, which Kubernetes cannot limit to their metadata -- hence not the default).
    credential_source: Literal["settings", "secrets"] = "settings"
    #: A JSON file of the same shape as ``credentials`` (merged into it), e.g. a mounted ConfigMap.
    credentials_file: Path | None = None
    #: Networks (CIDRs) an endpoint's ``base_url`` may reach although they are in the deny-list of loopback,
    #: link-local/metadata, unspecified, multicast and reserved addresses; env: JSON list or comma-separated.
    endpoint_allowed_networks: list[str] = Field(default_factory=list)
    #: Folders custom datasets (``.jsonl``) must resolve inside (symlinks followed); env: ``os.pathsep``-separated.
    #: Default: ``{data_dir}/datasets``.
    datasets_root: list[Path] = Field(default_factory=list)
    #: Folders local model and tokenizer paths must resolve inside; env: ``os.pathsep``-separated. Default:
    #: ``{cache}/models`` (where scripts/setup_opencompass.sh puts SmolLM2, the main job's model).
    models_root: list[Path] = Field(default_factory=list)
    #: Extra environment variable names (a trailing ``*`` matches a prefix) a local OpenCompass run inherits beyond
    #: the built-in allow-list (budeval/backends/runenv.py); env: JSON list or comma-separated.
    run_env_passthrough: list[str] = Field(default_factory=list)
    #: The Dapr routes (subscription delivery) require Dapr's app API token. Under daprd (``external``) the service
    #: refuses to start without ``APP_API_TOKEN`` unless this is false; the embedded sidecar always gets one.
    require_app_token: bool = True
    #: Serve the OpenAPI page (``/docs``, ``/openapi.json``) without a token; false: not served at all.
    docs_enabled: bool = True
    #: ``open``: ``/metrics`` without a token (a Prometheus scrape); ``token``: bearer token required; ``off``.
    metrics_access: Literal["open", "token", "off"] = "open"
    #: HTTP servers (the API and the embedded sidecar's): seconds a client may take to send one request (headers and
    #: body), and at most this many connections at once (more are refused).
    http_read_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    http_max_connections: int = Field(default=256, ge=1, le=100_000)
    #: Request bodies: nesting depth limit of JSON (deeper: 400 / rejected, never a crash).
    max_json_depth: int = Field(default=64, ge=4, le=10_000)

    @field_validator("datasets_root", "models_root", mode="before")
    @classmethod
    def _paths_from_env(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p for p in value.split(os.pathsep) if p.strip()]
        return value

    @field_validator("endpoint_allowed_networks", "run_env_passthrough", mode="before")
    @classmethod
    def _list_from_env(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not valid JSON: {exc.msg}") from None
            return [p.strip() for p in text.split(",") if p.strip()]
        return value

    @field_validator("default_node_selector", "default_tolerations", "credentials", mode="before")
    @classmethod
    def _json_from_env(cls, value: Any) -> Any:
        # Environment variables are strings: the chart passes these two as JSON.
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else None
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc.msg}") from None
        return value

    def resolved_store_dsn(self) -> str:
        return self.store_dsn or f"chdb:///{(self.data_dir / 'clickhouse').as_posix().lstrip('/')}"

    def resolved_archive_url(self) -> str:
        return self.archive_url or (self.data_dir / "archive").resolve().as_uri()

    def resolved_results_root(self) -> Path:
        return self.results_root or self.data_dir / "results"

    def resolved_opencompass_python(self) -> str:
        """The OpenCompass interpreter of the local backend: ``opencompass_python``, else
        ``BUDEVAL_OPENCOMPASS_PYTHON``; a path made absolute, a bare name looked up on PATH; "" when none."""
        python = self.opencompass_python or os.environ.get("BUDEVAL_OPENCOMPASS_PYTHON", "")
        if not python:
            return ""
        return str(Path(python).absolute()) if "/" in python else (shutil.which(python) or "")

    def resolved_datasets_roots(self) -> list[Path]:
        return list(self.datasets_root) or [self.data_dir / "datasets"]

    def resolved_models_roots(self) -> list[Path]:
        return list(self.models_root) or [default_cache_dir() / "models"]

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = env.get(f"BUDEVAL_{name.upper()}")
            if raw is not None and raw != "":
                values[name] = raw
        return cls.model_validate(values)
