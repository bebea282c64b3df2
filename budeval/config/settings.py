"""The one :class:`Settings` model of budeval: every setting, its default, its variable and its limits.

Values come from (highest first) flags (``budeval --set NAME=VALUE``), ``BUDEVAL_*`` environment variables, a
settings file (``BUDEVAL_SETTINGS_FILE`` / ``budeval --settings FILE``) and the defaults here; budeval/config/loading.py
reads them, docs/settings.md lists them (checked against this model by tests/test_settings.py). Secrets are
:class:`pydantic.SecretStr`: ``repr``, ``str`` and ``model_dump`` show ``**********``; only the code that sends one
calls ``get_secret_value()``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from budeval.config.sources import settings_sources

ENV_PREFIX = "BUDEVAL_"


def default_data_dir() -> Path:
    """``BUDEVAL_DATA_DIR``, else the user's data folder (platformdirs)."""
    return Path(os.environ.get("BUDEVAL_DATA_DIR") or platformdirs.user_data_dir("budeval"))


def default_cache_dir() -> Path:
    """Large reusable downloads and builds (OpenCompass venv, model, kube binaries): outside any checkout."""
    return Path(os.environ.get("BUDEVAL_CACHE") or Path.home() / ".cache" / "budeval")


def _alias(name: str, default: Any) -> Any:
    """A field read from a variable that is not ``BUDEVAL_<FIELD>`` (Dapr's and Hugging Face's own names); files and
    flags use the field name."""
    return Field(default=default, validation_alias=AliasChoices(name.lower(), name))


Seconds = Annotated[float, Field(gt=0, le=7 * 24 * 3600)]
Attempts = Annotated[int, Field(ge=0, le=1000)]


class Settings(BaseSettings):
    """All settings; construct with :func:`budeval.config.load_settings` (or ``Settings.from_env()``) to read the
    environment and the settings file with clear errors; ``Settings(name=value)`` reads them too (pydantic-settings)
    but raises pydantic's own error."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", env_ignore_empty=True, populate_by_name=True, case_sensitive=False,
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    #: ClickHouse DSN (``http://user:password@host:8123/db``) or ``chdb:///path``; a secret (it may hold a password).
    #: Default: ``chdb:///{data_dir}/clickhouse``.
    store_dsn: SecretStr = SecretStr("")
    #: How long the store's small concurrent writes wait to share one insert while it is busy (0: never); see
    #: budeval/storage/groupcommit.py. Adds at most this much to a write, only under load.
    store_linger_ms: float = Field(default=50.0, ge=0, le=1000)
    #: ClickHouse server (not chDB): seconds to connect, and to send a statement and receive its answer.
    store_connect_timeout_s: Seconds = 10.0
    store_send_receive_timeout_s: Seconds = 300.0
    archive_url: str = ""  # default: file://{data_dir}/archive ; or s3://bucket?endpoint=http://host:port
    #: S3 endpoint of an ``s3://`` archive URL without ``?endpoint=``.
    s3_endpoint: str = "https://s3.amazonaws.com"
    #: S3 credentials (both or neither; neither: anonymous). Secrets.
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    #: S3 requests: seconds to connect and to read an answer; retries of a failed request (5xx, connection) inside
    #: one archive step, with urllib3's backoff factor (sleeps factor x 2^n s); the workflow retries the step after.
    archive_connect_timeout_s: Seconds = 5.0
    archive_read_timeout_s: Seconds = 120.0
    archive_retries: Attempts = 2
    archive_retry_backoff_s: float = Field(default=0.2, ge=0, le=60)
    results_root: Path | None = None  # default: {data_dir}/results
    backend: Literal["local", "kubernetes"] = "local"
    namespace: str = "budeval"
    runner_image: str = "ghcr.io/budeval/opencompass-runner:0.5.4"
    runner_service_account: str = "budeval-runner"
    results_pvc: str = "budeval-results"
    #: OpenCompass's stock dataset files for the runner pods: a PVC (``datasets_pvc``) or a folder on the node
    #: (``datasets_host_path``), mounted read-only at ``compass_data_cache`` in every runner pod, whose
    #: ``COMPASS_DATA_CACHE`` it then is. Neither (""): the pods' cache is ``{results_root}/_cache/datasets``.
    datasets_pvc: str = ""
    datasets_host_path: str = ""
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
    #: The first pause between those retries and the longest (it doubles in between).
    activity_retry_first_s: float = Field(default=1.0, gt=0, le=3600)
    activity_retry_max_s: float = Field(default=60.0, gt=0, le=24 * 3600)
    #: Seconds between rounds of the service's housekeeping (budeval/service/housekeeping.py): archive evaluations
    #: left ``archive_pending``, correct rows left ``running`` whose workflow ended or is gone. 0: off.
    housekeeping_interval_s: float = Field(default=60.0, ge=0, le=24 * 3600)
    #: A run's status is polled (as a fallback to the watch) after this many seconds, doubling up to the maximum.
    poll_initial_s: float = 5.0
    poll_max_s: float = 60.0
    #: Kubernetes: a pod pending (unschedulable, image not pulled) this long fails its run.
    unschedulable_after_s: float = 600.0
    # -- the Kubernetes backend --
    #: API requests: seconds to connect and to read an answer; a watch asks the server to end it after
    #: ``kube_watch_timeout_s`` (then the watcher reconnects).
    kube_connect_timeout_s: Seconds = 5.0
    kube_read_timeout_s: Seconds = 30.0
    kube_watch_timeout_s: Seconds = 300.0
    #: Seconds between relists after a failed or expired (410) watch, one per consecutive failure (the last repeats);
    #: env: a JSON list.
    kube_watch_backoffs_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [0.5, 1.0, 2.0, 3.0, 5.0, 8.0], min_length=1
    )
    #: ``backoffLimit`` of a run's Job: how often Kubernetes restarts a failed pod before the Job fails.
    kube_job_backoff_limit: Attempts = 1
    # -- the local backend --
    #: Seconds between passes of its watcher (finished runs, queued runs started, timeouts enforced).
    local_poll_s: Seconds = 1.0
    #: A run marked started without a process this long after its start is reported crashed.
    local_start_grace_s: Seconds = 60.0
    #: Seconds a cancelled run's process group has after SIGTERM before SIGKILL.
    local_kill_grace_s: Seconds = 5.0
    # -- cluster defaults for runs whose request leaves them unset (the chart's runner values) --
    default_gpu_resource_name: str = "nvidia.com/gpu"
    default_node_selector: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)  # env: a JSON object
    #: env: a JSON list of tolerations
    default_tolerations: Annotated[list[dict[str, Any]], NoDecode] = Field(default_factory=list)
    default_queue: str | None = None  # Kueue LocalQueue name
    default_priority_class: str | None = None
    # -- model identity (budeval/engine/identity.py) --
    #: Seconds to wait for the Hugging Face hub's answer (a revision's commit), and how long an answer is remembered.
    hub_timeout_s: Seconds = 5.0
    hub_memo_s: float = Field(default=60.0, ge=0, le=24 * 3600)
    #: The hub asked for revisions (``HF_ENDPOINT``, as huggingface_hub reads it) and whether to ask at all.
    hf_endpoint: str = _alias("HF_ENDPOINT", "")
    #: As huggingface_hub reads it: ``1``/``true``/``yes``/``on`` (any case) is offline, anything else is not.
    hf_hub_offline: str = _alias("HF_HUB_OFFLINE", "")
    #: OpenCompass's dataset cache where the service runs (``COMPASS_DATA_CACHE``): stock datasets' files found there
    #: join the identity of a run; "" (unset): they do not.
    compass_data_cache: str = _alias("COMPASS_DATA_CACHE", "")
    # -- the service (``budeval serve``) --
    #: structlog level of ``budeval serve``.
    log_level: str = "INFO"
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
    #: Seconds the sidecar child process has to report its ports, and to stop after SIGTERM (then SIGKILL).
    sidecar_start_timeout_s: Seconds = 60.0
    sidecar_stop_timeout_s: Seconds = 15.0
    #: Under daprd (``external``), daprd may come up after the app: the workflow worker's start is tried this many
    #: times, this many seconds apart.
    dapr_start_attempts: int = Field(default=30, ge=1, le=10_000)
    dapr_start_retry_s: Seconds = 2.0
    #: Seconds a health probe of the sidecar (``/v1.0/healthz/outbound``: ``/readyz``, ``budeval submit``) waits.
    sidecar_probe_timeout_s: Seconds = 2.0
    #: Dapr's own variables (set by daprd's injector, read by the Dapr SDK too): where daprd listens, and its API
    #: token. ``dapr_grpc_port``/``dapr_http_port`` default to Dapr's 50001/3500 under daprd.
    dapr_grpc_port: int | None = Field(default=None, ge=1, le=65535, validation_alias=AliasChoices(
        "dapr_grpc_port", "DAPR_GRPC_PORT"))
    dapr_http_port: int | None = Field(default=None, ge=1, le=65535, validation_alias=AliasChoices(
        "dapr_http_port", "DAPR_HTTP_PORT"))
    dapr_grpc_endpoint: str = _alias("DAPR_GRPC_ENDPOINT", "")
    dapr_http_endpoint: str = _alias("DAPR_HTTP_ENDPOINT", "")
    dapr_api_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices(
        "dapr_api_token", "DAPR_API_TOKEN"))
    # -- the CLI talking to the service (``budeval submit/status/cancel``) --
    #: The service's URL; default: the running service's (``{data_dir}/serve.json``), else ``http://127.0.0.1:{port}``.
    api_url: str = ""
    #: Seconds the CLI waits for an API answer, for the service's ``/readyz``, for one read of the message log, and
    #: between polls while it waits for readiness or an event.
    client_timeout_s: Seconds = 30.0
    client_ready_timeout_s: Seconds = 5.0
    client_events_timeout_s: Seconds = 10.0
    client_poll_s: Seconds = 0.5
    # -- security (docs/security.md) --
    #: The API's bearer token (a secret), else the content of the file ``api_token_file`` (a mounted Secret); the
    #: embedded mode generates one when neither is set.
    api_token: SecretStr | None = None
    api_token_file: Path | None = None
    #: Dapr's app API token (``APP_API_TOKEN``, from ``dapr.io/app-token-secret``) that daprd sends with every call
    #: to the app; a secret.
    app_api_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices(
        "app_api_token", "APP_API_TOKEN"))
    #: Credentials requests may reference, by name, with the endpoint hosts each may be sent to; env: a JSON object
    #: ``{"team-a-openai": ["api.openai.com", "*.openai.azure.com"]}``. Local backend only (its key values come from
    #: ``BUDEVAL_SECRET_<NAME>_API_KEY`` / ``BUDEVAL_SECRET_<NAME>__<KEY>``, runenv.secret_env_name, read by
    #: :func:`budeval.config.credential_secret` when a run starts); on Kubernetes the registry is the Secrets labelled
    #: ``budeval.io/credential=true`` (hosts in the annotation ``budeval.io/allowed-hosts``).
    credentials: Annotated[dict[str, list[str]], NoDecode] = Field(default_factory=dict)
    #: Where the registry of credentials is read: ``settings`` (``credentials`` / ``credentials_file``, on any
    #: backend) or, on Kubernetes, ``secrets`` (Secrets labelled ``budeval.io/credential=true``; the service's Role
    #: then needs ``get`` on Secrets, which Kubernetes cannot limit to their metadata -- hence not the default).
    credential_source: Literal["settings", "secrets"] = "settings"
    #: A JSON file of the same shape as ``credentials`` (merged into it), e.g. a mounted ConfigMap.
    credentials_file: Path | None = None
    #: Networks (CIDRs) an endpoint's ``base_url`` may reach although they are in the deny-list of loopback,
    #: link-local/metadata, unspecified, multicast and reserved addresses; env: JSON list or comma-separated.
    endpoint_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # -- endpoint models (rendered into OpenCompass's OpenAI model; a request's endpoint source may override each) --
    #: Requests per second one OpenCompass task sends (its token bucket) and requests in flight at once (its thread
    #: pool; a batch of ``generation.batch_size`` prompts is sent at a time, so the lower of the two counts).
    endpoint_query_per_second: int = Field(default=4, ge=1, le=10_000)
    endpoint_max_parallel: int = Field(default=4, ge=1, le=1024)
    #: Retries of a prompt after a failed attempt (OpenCompass's ``retry`` is this + 1 attempts); inside each attempt
    #: the OpenAI client retries 408/409/429/5xx and connection errors twice more with backoff, following
    #: ``Retry-After``. A prompt failing them all ends its dataset's inference: failure class
    #: ``endpoint_unavailable``, with the predictions made before kept (docs/opencompass.md "Endpoint models").
    endpoint_retries: Attempts = 2
    #: Seconds one request may take (connect, send, the whole answer).
    endpoint_timeout_s: Seconds = 300.0
    #: Kubernetes: the CPU and memory an endpoint run's pod requests when its request leaves them unset (it runs no
    #: weights and asks for no GPU unless the request does); "": none.
    endpoint_default_cpu: str = Field(default="500m", pattern=r"^([0-9]+(\.[0-9]+)?m?)?$")
    endpoint_default_memory: str = Field(default="2Gi", pattern=r"^([0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?)?$")
    #: Folders custom datasets (``.jsonl``) must resolve inside (symlinks followed); env: ``os.pathsep``-separated.
    #: Default: ``{data_dir}/datasets``.
    datasets_root: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    #: Folders local model and tokenizer paths must resolve inside; env: ``os.pathsep``-separated. Default:
    #: ``{cache}/models`` (where scripts/setup_opencompass.sh puts SmolLM2, the main job's model).
    models_root: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    #: Extra environment variable names (a trailing ``*`` matches a prefix) a local OpenCompass run inherits beyond
    #: the built-in allow-list (budeval/backends/runenv.py); env: JSON list or comma-separated.
    run_env_passthrough: Annotated[list[str], NoDecode] = Field(default_factory=list)
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
    # -- tests only: crash injection (budeval/workflow/faults.py) --
    #: ``<activity>[:before|:after]``: this process SIGKILLs itself there, once (a marker file in
    #: ``fault_marker_dir``); unset in normal operation.
    fault_kill_at: str = ""
    #: ``<step>:<seconds>``: that step waits this long every time (a marker file in ``fault_marker_dir`` says it
    #: started), so a test can race a cancel against it; unset in normal operation.
    fault_delay_at: str = ""
    fault_marker_dir: Path = Path()

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
                return _json(text)
            return [p.strip() for p in text.split(",") if p.strip()]
        return value

    @field_validator("default_node_selector", "default_tolerations", "credentials", "kube_watch_backoffs_s",
                     mode="before")
    @classmethod
    def _json_from_env(cls, value: Any) -> Any:
        # Environment variables are strings: the chart passes these as JSON.
        if isinstance(value, str):
            return _json(value) if value.strip() else None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init arguments) > environment > settings file > defaults (budeval/config/sources.py)."""
        return settings_sources(settings_cls, init_settings)

    # -- resolved values ----------------------------------------------------------------------------------------
    def resolved_store_dsn(self) -> str:
        """The store's DSN, secret included (for the store client only; never log it)."""
        dsn = self.store_dsn.get_secret_value()
        return dsn or f"chdb:///{(self.data_dir / 'clickhouse').as_posix().lstrip('/')}"

    def resolved_archive_url(self) -> str:
        return self.archive_url or (self.data_dir / "archive").resolve().as_uri()

    def resolved_results_root(self) -> Path:
        return self.results_root or self.data_dir / "results"

    def resolved_opencompass_python(self) -> str:
        """The OpenCompass interpreter of the local backend (``opencompass_python``, ``BUDEVAL_OPENCOMPASS_PYTHON``):
        a path made absolute, a bare name looked up on PATH; "" when none."""
        python = self.opencompass_python or os.environ.get("BUDEVAL_OPENCOMPASS_PYTHON", "")
        if not python:
            return ""
        return str(Path(python).absolute()) if "/" in python else (shutil.which(python) or "")

    def resolved_datasets_roots(self) -> list[Path]:
        return list(self.datasets_root) or [self.data_dir / "datasets"]

    def resolved_models_roots(self) -> list[Path]:
        return list(self.models_root) or [default_cache_dir() / "models"]

    def hub_offline(self) -> bool:
        """Whether ``HF_HUB_OFFLINE`` forbids asking the hub."""
        return self.hf_hub_offline.strip().lower() in ("1", "true", "yes", "on")

    def resolved_hf_endpoint(self) -> str:
        """The hub's base URL without a trailing slash (default ``https://huggingface.co``)."""
        return (self.hf_endpoint or "https://huggingface.co").rstrip("/")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """The settings of this process (``environ``: instead of ``os.environ``); see :func:`load_settings`.

        Raises :class:`budeval.errors.ConfigError` naming the variable of a value that is not valid.
        """
        from budeval.config.loading import load_settings

        return load_settings(environ=environ)


def default(name: str) -> Any:
    """The default of setting ``name`` (for library defaults that must agree with the settings)."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


def reveal(secret: SecretStr | None) -> str | None:
    """The value of a secret setting for the one call that sends it; None when unset or empty. Never log it."""
    if secret is None:
        return None
    return secret.get_secret_value() or None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg}") from None
