"""Helpers every test folder shares: poll until a condition holds, run calls in threads at once, pick a free
loopback port, and point the Dapr SDK at an embedded sidecar for one test scope."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any


def wait_until(check: Callable[[], Any], what: str = "condition", timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Call ``check`` until it returns something truthy (returned); AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def in_threads(call: Callable[[Any], None], args: list[Any], timeout: float = 60.0) -> list[BaseException]:
    """``call(arg)`` for every arg, each in its own thread, all started before any is joined; what they raised."""
    errors: list[BaseException] = []

    def run(arg: Any) -> None:
        try:
            call(arg)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def point_sdk_at_sidecar(mp: Any, grpc_port: int, http_port: int) -> None:
    """What budeval.config.point_dapr_sdk_at does for ``budeval serve``, through a ``pytest.MonkeyPatch`` so the
    test scope undoes it: the workflow runtime/client take host/port; DaprClient (the publisher) reads
    DAPR_RUNTIME_HOST/DAPR_GRPC_PORT and polls DAPR_HTTP_PORT's /v1.0/healthz/outbound."""
    mp.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
    mp.setenv("DAPR_GRPC_PORT", str(grpc_port))
    mp.setenv("DAPR_HTTP_PORT", str(http_port))
    mp.delenv("DAPR_GRPC_ENDPOINT", raising=False)
    mp.delenv("DAPR_HTTP_ENDPOINT", raising=False)
