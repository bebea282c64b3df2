"""``EmbeddedSidecar``: the Dapr-compatible sidecar (workflow gRPC API, pub/sub, HTTP API) in this process."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from budeval.sidecar.db import connect
from budeval.sidecar.engine import Engine
from budeval.sidecar.grpc_api import DaprRuntime, TaskHub
from budeval.sidecar.http_api import SidecarHTTPServer
from budeval.sidecar.protos import dapr_grpc, dt_grpc
from budeval.sidecar.pubsub import PubSub

log = logging.getLogger("budeval.sidecar")


class EmbeddedSidecar:
    """Start with ``start()``; ``grpc_port``/``http_port`` are the bound ports (0 in the constructor: any free one)."""

    def __init__(
        self,
        state_path: Path,
        grpc_port: int = 0,
        http_port: int = 0,
        app_port: int | None = None,
        app_url: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.state_path = Path(state_path)
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.app_url = app_url or (f"http://127.0.0.1:{app_port}" if app_port else None)
        self._grpc: grpc.Server | None = None
        self._http: SidecarHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.engine: Engine | None = None
        self.pubsub: PubSub | None = None

    def start(self) -> None:
        self.engine = Engine(connect(self.state_path))
        self.pubsub = PubSub(connect(self.state_path), self.app_url)
        # Each GetWorkItems stream and each WaitForInstance* call holds a thread for its whole life.
        self._grpc = grpc.server(
            ThreadPoolExecutor(max_workers=256, thread_name_prefix="sidecar-grpc"),
            options=[
                # The SDK worker sends keepalive pings every 30 s on an idle stream; without these a gRPC server
                # answers GOAWAY "too_many_pings" and the worker reconnects.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                ("grpc.http2.max_ping_strikes", 0),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ],
        )
        dt_grpc.add_TaskHubSidecarServiceServicer_to_server(TaskHub(self.engine), self._grpc)
        dapr_grpc.add_DaprServicer_to_server(DaprRuntime(self.pubsub), self._grpc)
        bound = self._grpc.add_insecure_port(f"{self.host}:{self.grpc_port}")
        if not bound:
            raise OSError(f"cannot bind the sidecar's gRPC port {self.host}:{self.grpc_port}")
        self.grpc_port = bound
        self._grpc.start()
        self._http = SidecarHTTPServer((self.host, self.http_port), self.pubsub)
        self.http_port = int(self._http.server_address[1])
        for target, name in ((self._http.serve_forever, "sidecar-http"), (self.engine.run_timers, "sidecar-timers")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.pubsub.start()
        log.info(
            "embedded sidecar up: grpc %s:%d, http %s:%d, state %s",
            self.host,
            self.grpc_port,
            self.host,
            self.http_port,
            self.state_path,
        )

    def set_app(self, app_url: str | None) -> None:
        """Where subscribed messages go (the app's base URL); its ``GET /dapr/subscribe`` is read again."""
        self.app_url = app_url
        if self.pubsub is not None:
            self.pubsub.set_app(app_url)

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()
        if self._grpc is not None:
            self._grpc.stop(grace=1.0).wait(5)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self.pubsub is not None:
            self.pubsub.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self._grpc = None
        self._http = None

    def __enter__(self) -> EmbeddedSidecar:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
