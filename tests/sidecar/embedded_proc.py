"""A whole "app" process for the kill -9 tests: the D2 embedded sidecar and a Dapr workflow worker in one process.

``python -m tests.sidecar.embedded_proc STATE GRPC_PORT HTTP_PORT MARKS_DIR`` runs until killed; with STATE ``-`` it
is a worker only, connected to a sidecar already listening on GRPC_PORT. Activities append a
line to ``MARKS_DIR/marks`` when they start and end, so the test can see what ran and how often.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf

from budeval.sidecar.embedded import EmbeddedSidecar

MARKS = Path(".")


def _mark(text: str) -> None:
    with (MARKS / "marks").open("a") as f:
        f.write(text + "\n")
        f.flush()


def mark(ctx: wf.WorkflowActivityContext, name: str) -> str:
    _mark(name)
    return name


def slow(ctx: wf.WorkflowActivityContext, seconds: float) -> str:
    _mark("slow-start")
    time.sleep(seconds)
    _mark("slow-end")
    return "slow"


def durable(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    first = yield ctx.call_activity(mark, input="first")
    yield ctx.create_timer(timedelta(seconds=3))
    middle = yield ctx.call_activity(slow, input=4.0)
    last = yield ctx.call_activity(mark, input="last")
    return [first, middle, last]


def main() -> None:
    global MARKS
    state, grpc_port, http_port, MARKS = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    app_port = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[5] == "--app-port" else None
    # keep a reference: a collected grpc.Server stops serving
    sidecar = EmbeddedSidecar(state, grpc_port, http_port, app_port=app_port).start() if str(state) != "-" else None
    runtime = wf.WorkflowRuntime(host="127.0.0.1", port=str(grpc_port))
    runtime.register_workflow(durable)
    runtime.register_activity(mark)
    runtime.register_activity(slow)
    runtime.start()
    (MARKS / "ready").write_text(str(time.time()))
    threading.Event().wait()
    del sidecar


if __name__ == "__main__":
    main()
