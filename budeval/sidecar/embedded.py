"""``EmbeddedSidecar``: the engine, the broker, one gRPC port (workflows + PublishEvent) and one HTTP port, in-process.

``budeval serve`` starts it from threads when no daprd is configured; ``python -m budeval.sidecar`` runs it alone.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent import futures
from pathlib import Path

import grpc
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs

from budeval.errors import ValidationError
from budeval.jsonlimits import DEFAULT_MAX_DEPTH
from budeval.logs import get_logger
from budeval.sidecar.dapr_http import SidecarHTTPServer
from budeval.sidecar.orchestration import Engine
from budeval.sidecar.store import SidecarStore
from budeval.sidecar.taskhub import TaskHub, dapr_handler
from budeval.sidecar.topics import Broker

HOST = "127.0.0.1"
#: The app id of the sidecar's main port (budeval's chart deploys the service as app ``budeval`` too).
DEFAULT_APP_ID = "budeval"


class EmbeddedSidecar:
    """A Dapr-compatible sidecar persisted in ``state_path`` (SQLite). Ports 0 pick free ones.

    It serves the app ``app_id`` on ``grpc_port``; ``apps`` (app id -> wanted gRPC port) adds more apps on one engine,
    each on its own gRPC port as each app has its own daprd (point that app's ``DAPR_GRPC_PORT`` at
    ``app_ports[id]``): work items go to the workers of the app a workflow or activity belongs to, ``app_id=`` on a
    call routes it to that app, and a call to an app not listed fails at once (``AppNotFound``).
    """

    def __init__(self, state_path: Path, grpc_port: int = 0, http_port: int = 0, app_port: int | None = None,
                 app_host: str = HOST, max_workers: int = 64, app_url: str | None = None,
                 app_token: str | None = None, read_timeout_s: float = 30.0, max_connections: int = 256,
                 max_json_depth: int = DEFAULT_MAX_DEPTH, forget_bodies: tuple[str, ...] = (),
                 app_id: str = DEFAULT_APP_ID, apps: Mapping[str, int] | None = None) -> None:
        self.state_path = Path(state_path)
        for name in (app_id, *(apps or {})):
            if not name or not isinstance(name, str):
                raise ValidationError(f"invalid app id {name!r}: a non-empty name", field="app_id")
        self.app_id = app_id
        self._want_apps = {k: v for k, v in (apps or {}).items() if k != app_id}
        #: app id -> bound gRPC port (the main app's is :attr:`grpc_port`), filled by :meth:`start`.
        self.app_ports: dict[str, int] = {}
        #: Sent as ``dapr-api-token`` with every call to the app, as daprd sends its APP_API_TOKEN.
        self.app_token = app_token
        self.forget_bodies = frozenset(forget_bodies)
        self.http_limits = {"read_timeout_s": read_timeout_s, "max_connections": max_connections,
                            "max_json_depth": max_json_depth}
        self._want_grpc, self._want_http = grpc_port, http_port
        self.app_url = app_url.rstrip("/") if app_url else (f"http://{app_host}:{app_port}" if app_port else None)
        self.max_workers = max_workers
        self.grpc_port = 0
        self.http_port = 0
        self._store: SidecarStore | None = None
        self.engine: Engine | None = None
        self.broker: Broker | None = None
        self._grpc: grpc.Server | None = None
        self._extra: list[grpc.Server] = []
        self._http: SidecarHTTPServer | None = None

    def _server(self, app_id: str, want: int, workers: int) -> tuple[grpc.Server, int]:
        assert self.engine is not None and self.broker is not None and self._store is not None
        pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"sidecar-grpc-{app_id}")
        server = grpc.server(pool,
                             options=[("grpc.so_reuseport", 0),  # a busy port must fail, not be shared
                                      ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                                      ("grpc.max_send_message_length", 64 * 1024 * 1024)])
        stubs.add_TaskHubSidecarServiceServicer_to_server(TaskHub(self.engine, app_id), server)
        server.add_generic_rpc_handlers((dapr_handler(self.broker),))
        port = server.add_insecure_port(f"{HOST}:{want}")
        if port == 0:
            self._store.close()
            raise ValidationError(f"cannot listen on {HOST}:{want} (gRPC, app '{app_id}')", field="sidecar_grpc_port")
        return server, port

    def start(self) -> EmbeddedSidecar:
        log = get_logger(component="sidecar")
        self._store = SidecarStore(self.state_path)
        self.engine = Engine(self._store, self.app_id)
        self.engine.apps.update(self._want_apps)
        # daprd sends the app token it was given (APP_API_TOKEN) on every call to the app; so does this sidecar
        self.broker = Broker(self._store, self.app_url, self.app_token, forget_bodies=self.forget_bodies)
        server, port = self._server(self.app_id, self._want_grpc, self.max_workers)
        self.app_ports = {self.app_id: port}
        extra = []
        for app, want in sorted(self._want_apps.items()):
            other, self.app_ports[app] = self._server(app, want, min(self.max_workers, 16))
            extra.append(other)
        try:
            self._http = SidecarHTTPServer(HOST, self._want_http, self.broker, **self.http_limits)  # type: ignore[arg-type]
        except OSError as exc:
            self._store.close()
            raise ValidationError(f"cannot listen on {HOST}:{self._want_http}: {exc.strerror}",
                                  field="sidecar_http_port") from None
        self.grpc_port, self.http_port = port, self._http.port
        self._grpc, self._extra = server, extra
        self.engine.start()
        self.broker.start()
        for one in (server, *extra):
            one.start()
        self._http.start()
        log.info("embedded sidecar started", grpc_port=self.grpc_port, http_port=self.http_port,
                 state=str(self.state_path), app=self.app_url, apps=self.app_ports)
        return self

    def set_app(self, app: int | str, app_host: str = HOST) -> None:
        """Deliver subscriptions to this app, given as a port or a base URL (its ``/dapr/subscribe`` is read again)."""
        self.app_url = app.rstrip("/") if isinstance(app, str) else f"http://{app_host}:{app}"
        if self.broker is not None:
            self.broker.set_app(self.app_url)

    def stop(self, grace: float = 2.0) -> None:
        if self.engine is not None:
            self.engine.close()  # ends the work item streams, so the server stops promptly
        for server in self._extra:
            server.stop(grace).wait(grace + 5)
        self._extra = []
        if self._grpc is not None:
            self._grpc.stop(grace).wait(grace + 5)
            self._grpc = None
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self.broker is not None:
            self.broker.close()
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> EmbeddedSidecar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _app_id(text: str) -> str:
    """An ``--app-id`` value: a non-empty name without spaces or ``=`` (argparse reports the error and exits 2)."""
    import argparse

    if not text or any(ch.isspace() or ch == "=" for ch in text):
        raise argparse.ArgumentTypeError(f"invalid app id {text!r}: a non-empty name without spaces or '='")
    return text


def _extra_app(spec: str) -> tuple[str, int]:
    """An ``--extra-app ID[=PORT]`` value as ``(id, port)`` (0: a free port); a bad id or port is an argparse
    error (exit 2, the reason on stderr), not a traceback."""
    import argparse

    name, _, port = spec.partition("=")
    if not port.strip():
        return _app_id(name), 0
    if not port.strip().isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port!r} in --extra-app {spec!r}: expected 0-65535")
    return _app_id(name), int(port)


def main(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    """``python -m budeval.sidecar.embedded --state FILE [--grpc-port P] [--http-port Q] [--app-port A]``.

    Runs until SIGTERM/SIGINT (or ``stop`` is set: ``python -m budeval.sidecar`` passes the event its early signal
    handlers set, so a signal that came while this module was imported still counts); returns 0 once stopped."""
    import argparse
    import json
    import os
    import signal
    import sys

    from budeval.logs import configure

    if stop is None:
        stop = own = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: own.set())

    parser = argparse.ArgumentParser(prog="python -m budeval.sidecar.embedded", description=main.__doc__)
    parser.add_argument("--state", type=Path, required=True, help="SQLite file holding all sidecar state")
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--app-port", type=int, default=None, help="the app's port (subscription delivery)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--parent-pid", type=int, default=None, help="die with this process (Linux)")
    parser.add_argument("--read-timeout", type=float, default=30.0, help="seconds a client has to send a request")
    parser.add_argument("--max-connections", type=int, default=256, help="HTTP connections served at once")
    parser.add_argument("--max-json-depth", type=int, default=DEFAULT_MAX_DEPTH, help="JSON nesting limit")
    parser.add_argument("--app-token-stdin", action="store_true",
                        help="read Dapr's app API token (sent to the app with every call) from the first line of "
                             "stdin; default: APP_API_TOKEN, as daprd")
    parser.add_argument("--forget-bodies", action="append", default=[], metavar="TOPIC",
                        help="drop a message's body from the log once delivered (repeatable)")
    parser.add_argument("--app-id", default=DEFAULT_APP_ID, type=_app_id, help="the app served on --grpc-port")
    parser.add_argument("--extra-app", action="append", default=[], metavar="ID[=PORT]", type=_extra_app,
                        help="another app on this sidecar, on its own gRPC port (repeatable; no port: a free one)")
    args = parser.parse_args(argv)
    apps = dict(args.extra_app)
    if args.parent_pid is not None:
        from budeval.sidecar.process import die_with_parent

        die_with_parent(args.parent_pid)
    configure(args.log_level)
    # The app token: on stdin from `budeval serve` (never in argv, visible in ps), else from the environment as daprd
    # reads it. This program stands in for daprd and imports nothing of budeval.config, so it reads its own variable.
    if args.app_token_stdin:
        app_token = sys.stdin.readline().strip() or None
    else:
        app_token = os.environ.get("APP_API_TOKEN", "").strip() or None
    sidecar = EmbeddedSidecar(args.state, args.grpc_port, args.http_port, app_port=args.app_port, app_token=app_token,
                              read_timeout_s=args.read_timeout, max_connections=args.max_connections,
                              max_json_depth=args.max_json_depth, forget_bodies=tuple(args.forget_bodies),
                              app_id=args.app_id, apps=apps)
    log = get_logger(component="sidecar")
    if stop.is_set():  # a stop requested while this process started: never start serving
        log.info("embedded sidecar stopped before it started")
        return 0
    sidecar.start()
    # one JSON line on stdout tells a parent process where the sidecar listens
    print(json.dumps({"grpc_port": sidecar.grpc_port, "http_port": sidecar.http_port, "apps": sidecar.app_ports}),
          flush=True)
    stop.wait()
    log.info("embedded sidecar stopping (signal)")
    sidecar.stop()
    log.info("embedded sidecar stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
