"""A whole process (sidecar + worker) for the kill -9 tests.

``python -m tests.sidecar.crash_process STATE GRPC_PORT HTTP_PORT MARKS [APP_URL]``
"""

from __future__ import annotations

import os
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf

from budeval.sidecar import EmbeddedSidecar

MARKS = Path(sys.argv[4]) if len(sys.argv) > 4 else Path("marks")


def _mark(text: str) -> None:
    fd = os.open(MARKS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def mark(ctx: Any, name: str) -> str:
    _mark(name)
    return name


def slow(ctx: Any, name: str) -> str:
    _mark(f"{name}-start")
    time.sleep(2.0)
    _mark(f"{name}-end")
    return name


def crash_flow(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    a = yield ctx.call_activity(mark, input="first")
    yield ctx.create_timer(timedelta(seconds=2))
    b = yield ctx.call_activity(slow, input="slow")
    c = yield ctx.call_activity(mark, input="final")
    return [a, b, c]


def main() -> None:
    state, grpc_port, http_port = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    app_url = sys.argv[5] if len(sys.argv) > 5 else None
    sidecar = EmbeddedSidecar(state, grpc_port, http_port, app_url=app_url)
    sidecar.start()
    runtime = wf.WorkflowRuntime(host="127.0.0.1", port=str(sidecar.grpc_port))
    runtime.register_workflow(crash_flow)
    runtime.register_activity(mark)
    runtime.register_activity(slow)
    runtime.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
