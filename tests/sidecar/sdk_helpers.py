"""Shared helpers for the sidecar tests: a started sidecar plus the unmodified SDK runtime/client pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf

from budeval.sidecar import EmbeddedSidecar


def _fresh(fn: Callable[..., Any]) -> Callable[..., Any]:
    # The SDK marks a registered function, so each runtime (tests restart them) gets its own wrapper.
    def registered(ctx: Any, payload: Any = None) -> Any:
        return fn(ctx, payload)

    registered.__name__ = registered.__qualname__ = fn.__name__
    return registered


@contextmanager
def running(
    state: Path, workflows: list[Callable[..., Any]], activities: list[Callable[..., Any]]
) -> Iterator[tuple[EmbeddedSidecar, wf.DaprWorkflowClient]]:
    """A sidecar, a worker with these registrations and a client, all real gRPC on loopback."""
    sidecar = EmbeddedSidecar(state)
    sidecar.start()
    runtime = wf.WorkflowRuntime(host="127.0.0.1", port=str(sidecar.grpc_port))
    for fn in workflows:
        runtime.register_workflow(_fresh(fn), name=fn.__name__)
    for fn in activities:
        runtime.register_activity(_fresh(fn), name=fn.__name__)
    runtime.start()
    client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
    try:
        yield sidecar, client
    finally:
        runtime.shutdown()
        sidecar.stop()
