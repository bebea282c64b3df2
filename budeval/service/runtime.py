"""``budeval serve``: assembles store, archive, backend, sidecar, workflow runtime and the HTTP app, and runs them.

Embedded (when no Dapr sidecar is named in the environment): the Dapr-compatible sidecar runs next to this app with
its state in ``{data_dir}/sidecar.db`` -- by default (Linux) in a child process that dies with this one
(``process``, ``budeval.sidecar.process``), or in this process (``embedded``); the SDK is pointed at it through
``DAPR_*`` variables, and it delivers the request topic to this app's subscription route. External (a cluster):
daprd is already there (``DAPR_GRPC_PORT``/``DAPR_HTTP_PORT``) and calls the app on ``port``. The same code path
otherwise.

``{data_dir}/serve.json`` tells the CLI (``submit``, ``status``, ``cancel``) where the running service and its
sidecar listen; in embedded mode without a configured token, a token is generated into ``{data_dir}/api-token``.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from budeval.backends.base import JobBackend, RunState, Watch
from budeval.config import Settings, point_dapr_sdk_at
from budeval.errors import ValidationError
from budeval.events.publisher import DaprPublisher
from budeval.logs import configure, get_logger, release_sdk_handlers, sdk_logger_options
from budeval.policy.credentials import CredentialRegistry, EndpointPolicy, StaticRegistry
from budeval.service.app import ServiceDeps, create_app
from budeval.service.auth import Auth, ensure_local_token, load_api_token, load_app_token
from budeval.service.housekeeping import Housekeeping
from budeval.service.httpserver import protocol
from budeval.service.metrics import CountingPublisher, CountingStore, Metrics, TimedBackend, timed_parser
from budeval.service.progress import ProgressMonitor
from budeval.service.servefile import TOKEN_FILE, where_it_lives, write_serve_file
from budeval.workflow import names
from budeval.workflow.activities import Deps
from budeval.workflow.worker import build_runtime

#: Where daprd listens when its injector sets no ``DAPR_GRPC_PORT`` / ``DAPR_HTTP_PORT`` (Dapr's defaults).
DAPR_GRPC_PORT, DAPR_HTTP_PORT = 50001, 3500


def sidecar_mode(settings: Settings, platform: str = sys.platform) -> str:
    """``auto``: daprd when the environment names one (``DAPR_GRPC_PORT`` / ``DAPR_GRPC_ENDPOINT``, settings
    ``dapr_grpc_*``); otherwise the embedded sidecar in a child process on Linux (measured ~25% more evaluations/s
    and less CPU per evaluation than in-process on two cores, and the kernel kills it with the service), in this
    process elsewhere (no parent-death signal to rely on)."""
    if settings.sidecar != "auto":
        return settings.sidecar
    if settings.dapr_grpc_port or settings.dapr_grpc_endpoint:
        return "external"
    return "process" if platform.startswith("linux") else "embedded"


def make_backend(settings: Settings) -> JobBackend:
    if settings.backend == "kubernetes":
        from budeval.backends.kubernetes import KubernetesBackend

        backend: JobBackend = KubernetesBackend(settings)
    else:
        from budeval.backends.local import LocalBackend

        backend = LocalBackend(settings)
    return backend


def app_token_for(mode: str, settings: Settings) -> str | None:
    """Dapr's app API token the subscription routes require.

    Under daprd: ``APP_API_TOKEN`` (``dapr.io/app-token-secret``); without it the service refuses to start unless
    ``require_app_token`` is false (then the routes are open, as the broker is). Embedded: ``APP_API_TOKEN`` if
    set, else a fresh random token per start, handed to the embedded sidecar, which sends it with every delivery.
    """
    token = load_app_token(settings)
    if mode == "external":
        if token is None and settings.require_app_token:
            raise ValidationError(
                "set APP_API_TOKEN (Dapr's app token: dapr.io/app-token-secret) so that only daprd can deliver "
                "requests, or BUDEVAL_REQUIRE_APP_TOKEN=false to leave the subscription routes open"
            )
        return token
    return token or secrets.token_urlsafe(32)


def make_endpoint_policy(settings: Settings, backend: JobBackend) -> EndpointPolicy:
    """The credential registry of the backend (labelled Secrets on Kubernetes, the settings locally) and the hosts."""
    registry: CredentialRegistry
    api = getattr(backend, "api", None)
    if settings.backend == "kubernetes" and settings.credential_source == "secrets" and api is not None:
        from budeval.backends.kubernetes.credentials import SecretCredentials

        registry = SecretCredentials(api, settings.namespace)
    else:
        registry = StaticRegistry.from_settings(settings)
    return EndpointPolicy(registry, allowed_networks=settings.endpoint_allowed_networks)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValidationError(f"cannot listen on {host}:{port}: {exc.strerror}", field="port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


#: Seconds between attempts to raise ``run_finished`` (the watcher's delivery thread waits; nothing else does).
RAISE_RETRY_S: tuple[float, ...] = (0.5, 1.0, 2.0)


def raise_run_finished(workflows: Any, state: RunState, retry_s: tuple[float, ...] = RAISE_RETRY_S) -> bool:
    """The backend watcher's callback: wake the run's child workflow. A sidecar briefly away is retried after each
    of ``retry_s`` seconds; an instance that does not exist (cancelled, purged) is not. When all fail the workflow's
    timer poll catches up -- up to ``poll_max_s`` later, so a lost event costs up to a minute. True when raised."""
    import grpc

    log = get_logger(eval_id=state.eval_id, run_id=state.run_id)
    for attempt in range(len(retry_s) + 1):
        try:
            workflows.raise_workflow_event(
                names.run_instance_id(state.eval_id, state.run_id), names.RUN_FINISHED_EVENT,
                data=state.model_dump(mode="json"),
            )
            return True
        except Exception as exc:
            code = exc.code() if isinstance(exc, grpc.RpcError) else None
            if code == grpc.StatusCode.NOT_FOUND or attempt == len(retry_s):
                log.warning("run_finished event not raised", error=type(exc).__name__, code=str(code),
                            attempts=attempt + 1)
                return False
            time.sleep(retry_s[attempt])
    return False


@dataclass
class Service:
    """Everything ``serve`` started, in start order; :meth:`stop` undoes it in reverse."""

    settings: Settings
    sock: socket.socket
    app: Any
    api_url: str
    dapr_http_port: int | None
    dapr_grpc_port: int | None
    mode: str
    sidecar_pid: int | None = None  # the sidecar's own process (mode ``process``)
    #: Exit code of the sidecar child when it died under the running service (then ``serve`` exits non-zero).
    sidecar_exit: int | None = None
    sidecar_proc: Any = None  # its subprocess.Popen, watched by :func:`supervise_sidecar`
    _stops: list[tuple[str, Any]] = field(default_factory=list)

    def stop(self) -> None:
        log = get_logger(component="serve")
        while self._stops:
            what, fn = self._stops.pop()
            try:
                fn()
            except Exception as exc:
                log.warning("stop step failed", step=what, error=type(exc).__name__)


def _start_runtime(deps: Deps, attempts: int, retry_s: float) -> Any:
    """Register and start the workflow worker; daprd may come up after the app, so an external sidecar is retried
    (``attempts`` times, ``retry_s`` seconds apart: settings ``dapr_start_*``)."""
    log = get_logger(component="serve")
    for attempt in range(1, attempts + 1):
        runtime, _ = build_runtime(deps)
        try:
            runtime.start()
            return runtime
        except BaseException as exc:  # also a SIGTERM (KeyboardInterrupt) while it waits: stop the worker's thread
            with contextlib.suppress(Exception):
                runtime.shutdown()
            if attempt == attempts or not isinstance(exc, Exception):
                raise
            log.warning("workflow worker not started yet; retrying", error=type(exc).__name__, attempt=attempt)
            time.sleep(retry_s)
    raise AssertionError("unreachable")


def assemble(settings: Settings) -> Service:
    """Open everything and start the workflow worker and watcher; the HTTP server is started by :func:`serve`."""
    import dapr.ext.workflow as wf

    from budeval.engine.catalog import SuiteCatalog, suite_folders
    from budeval.engine.results import parse_run
    from budeval.storage.factory import open_archive, open_store

    log = get_logger(component="serve")
    mode = sidecar_mode(settings)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    token = load_api_token(settings)
    if token is None:
        if mode == "external":
            raise ValidationError("set BUDEVAL_API_TOKEN or BUDEVAL_API_TOKEN_FILE (the API needs a token)")
        token = ensure_local_token(data_dir / TOKEN_FILE)
        log.info("generated a local API token", path=str(data_dir / TOKEN_FILE))
    auth = Auth(api_token=token, app_token=app_token_for(mode, settings))

    sock = bind_socket(settings.host, settings.port)
    app_port = int(sock.getsockname()[1])
    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    api_url = f"http://{shown_host}:{app_port}"
    service = Service(settings, sock, None, api_url, None, None, mode)
    service._stops.append(("socket", sock.close))
    try:
        metrics = Metrics()
        suites = SuiteCatalog(suite_folders(settings.suites_path))  # re-read when a suite file changes
        raw_store = open_store(settings.resolved_store_dsn(), linger_s=settings.store_linger_ms / 1000,
                               settings=settings)
        store = CountingStore(raw_store, metrics)
        service._stops.append(("store", store.close))
        applied = store.migrate()
        if applied:
            log.info("store migrated", applied=applied)
        ttl = store.apply_predictions_ttl(settings.predictions_ttl_s)  # docs/storage.md "Retention"
        if ttl.change != "unchanged":
            log.info("predictions TTL", change=ttl.change, ttl_s=settings.predictions_ttl_s, refilled=len(ttl.refilled))
        archive = open_archive(settings.resolved_archive_url(), settings)
        raw_backend = make_backend(settings)
        backend = TimedBackend(raw_backend, metrics)
        endpoints = make_endpoint_policy(settings, raw_backend)

        if mode in ("embedded", "process"):
            from budeval.sidecar import EmbeddedSidecar
            from budeval.sidecar.process import SidecarProcess

            common: dict[str, Any] = dict(
                state_path=data_dir / "sidecar.db",
                grpc_port=settings.sidecar_grpc_port,
                http_port=settings.sidecar_http_port,
                app_port=app_port,
                app_token=auth.app_token,
                read_timeout_s=settings.http_read_timeout_s,
                max_connections=settings.http_max_connections,
                max_json_depth=settings.max_json_depth,
                forget_bodies=(settings.request_topic,),
            )
            sidecar: EmbeddedSidecar | SidecarProcess
            if mode == "embedded":
                sidecar = EmbeddedSidecar(**common)
            else:
                sidecar = SidecarProcess(**common, start_timeout=settings.sidecar_start_timeout_s,
                                         stop_timeout=settings.sidecar_stop_timeout_s)
            sidecar.start()
            if isinstance(sidecar, SidecarProcess):
                service.sidecar_pid = sidecar.pid
                service.sidecar_proc = sidecar.proc
            service._stops.append(("sidecar", sidecar.stop))
            service.dapr_grpc_port, service.dapr_http_port = int(sidecar.grpc_port), int(sidecar.http_port)
            point_dapr_sdk_at(service.dapr_grpc_port, service.dapr_http_port)
            sidecar_http = f"http://127.0.0.1:{service.dapr_http_port}"
        else:
            service.dapr_grpc_port = settings.dapr_grpc_port or DAPR_GRPC_PORT
            service.dapr_http_port = settings.dapr_http_port or DAPR_HTTP_PORT
            sidecar_http = settings.dapr_http_endpoint or f"http://127.0.0.1:{service.dapr_http_port}"

        publisher = CountingPublisher(DaprPublisher(settings.pubsub_name), metrics)
        service._stops.append(("publisher", publisher.close))
        progress = ProgressMonitor(raw_backend, publisher, settings.events_topic, settings.progress_interval_s)
        backend.progress = progress
        deps = Deps(
            settings=settings,
            backend=backend,
            store=store,  # type: ignore[arg-type]  # forwards every ResultStore method
            archive=archive,
            publisher=publisher,
            parse=timed_parser(parse_run, metrics),
            suites=suites,
        )
        runtime = _start_runtime(deps, attempts=settings.dapr_start_attempts if mode == "external" else 1,
                                 retry_s=settings.dapr_start_retry_s)
        service._stops.append(("workflow runtime", runtime.shutdown))
        workflows = wf.DaprWorkflowClient(logger_options=sdk_logger_options())  # its lines once, as JSON
        # The cancel activity tells the runs' child workflows through the same client (budeval/workflow/outcomes.py).
        deps.raise_event = lambda instance, name, data: workflows.raise_workflow_event(instance, name, data=data)

        def on_finished(state: RunState) -> None:
            raise_run_finished(workflows, state)

        watch: Watch = backend.watch(on_finished)
        service._stops.append(("watch", watch.stop))
        housekeeping = Housekeeping(settings, store, archive, workflows, publisher).start()
        service._stops.append(("housekeeping", housekeeping.stop))
        service._stops.append(("progress", progress.start().stop))

        service.app = create_app(
            ServiceDeps(
                settings=settings,
                workflows=workflows,
                store=store,
                backend=backend,
                publisher=publisher,
                suites=suites,
                auth=auth,
                metrics=metrics,
                sidecar_http_url=sidecar_http,
                endpoints=endpoints,
                progress=progress,
            )
        )
    except BaseException:
        service.stop()
        raise
    return service


def supervise_sidecar(service: Service, server: Any, stopping: threading.Event, poll_s: float = 1.0) -> None:
    """Watch the sidecar child: if it dies while the service runs, fail ``/healthz`` and stop the server, so that
    ``serve`` exits non-zero and a supervisor (systemd, Kubernetes, a shell loop) restarts both on the same state.
    Nothing is lost: workflows and undelivered messages are in ``sidecar.db``, runs in their folders."""
    proc = service.sidecar_proc
    if proc is None:
        return
    while not stopping.wait(poll_s):
        code = proc.poll()
        if code is not None and not stopping.is_set():
            service.sidecar_exit = code
            service.app.state.failure = f"the sidecar process exited with code {code}"
            get_logger(component="serve").error("sidecar process died; stopping the service", exit_code=code)
            server.should_exit = True
            return


def serve(settings: Settings | None = None) -> int:
    """Run until SIGTERM/SIGINT, then stop everything gracefully."""
    import uvicorn

    settings = settings or Settings.from_env()
    configure(settings.log_level)
    log = get_logger(component="serve")
    on_main = threading.current_thread() is threading.main_thread()
    if on_main:
        # In a pod this is PID 1, and the kernel drops a signal PID 1 has no handler for: a SIGTERM while the
        # service starts (waiting for daprd can take a minute) was lost. Until it serves, SIGTERM interrupts the
        # start like Ctrl-C (assemble stops what it opened; the CLI exits 130).
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.default_int_handler)
    service = assemble(settings)
    serve_file = write_serve_file(service)
    service._stops.insert(0, ("serve file", lambda: serve_file.unlink(missing_ok=True)))
    config = uvicorn.Config(
        service.app, log_level="warning", access_log=False, lifespan="off", log_config=None,  # our JSON handler
        http=protocol(settings.http_read_timeout_s), limit_concurrency=settings.http_max_connections,
    )
    server = uvicorn.Server(config)
    if on_main:
        # uvicorn re-raises the signal it caught once it has shut down; with these handlers in place that re-raise
        # is harmless and the ``finally`` below stops the worker, sidecar and store cleanly. A signal that comes
        # before uvicorn installs its own handlers asks it to exit at once.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
    release_sdk_handlers()  # any handler an SDK object attached while assembling: its lines go through ours once
    places = where_it_lives(service)
    log.info("serving", **places, sidecar=service.mode, backend=settings.backend)
    if sys.stderr.isatty():  # a person at a terminal also gets them as plain lines (a log file keeps JSON only)
        for name, value in places.items():
            print(f"  {name + ':':<9} {value}", file=sys.stderr)
    stopping = threading.Event()
    threading.Thread(target=supervise_sidecar, args=(service, server, stopping), name="sidecar-supervisor",
                     daemon=True).start()
    try:
        server.run(sockets=[service.sock])
    finally:
        stopping.set()
        log.info("stopping")
        service.stop()
        log.info("stopped")
    return 0 if service.sidecar_exit is None else 1
