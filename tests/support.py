"""Helpers every test folder shares: poll until a condition holds, and pick a free loopback port."""

from __future__ import annotations

import socket
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
