"""Helpers for the embedded-sidecar tests: a sidecar plus the real Dapr workflow SDK (the subscriber app is
``tests.sidecar.app_stub``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dapr.ext.workflow as wf

from budeval.sidecar.embedded import EmbeddedSidecar


@dataclass
class Stack:
    sidecar: EmbeddedSidecar
    runtime: wf.WorkflowRuntime
    client: wf.DaprWorkflowClient


@contextmanager
def running_stack(state: Path, register: Callable[[wf.WorkflowRuntime], None]) -> Iterator[Stack]:
    """Sidecar + started WorkflowRuntime + client, all pointed at the sidecar's gRPC port (no env variables)."""
    sidecar = EmbeddedSidecar(state).start()
    runtime = wf.WorkflowRuntime(host="127.0.0.1", port=str(sidecar.grpc_port))
    register(runtime)
    runtime.start()
    client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
    try:
        yield Stack(sidecar, runtime, client)
    finally:
        client.close()
        runtime.shutdown()
        sidecar.stop()
