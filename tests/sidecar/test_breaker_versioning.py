"""Breaker scenarios for workflow versioning, STALLED, app-id routing and history propagation on the embedded
sidecar, driven by the unmodified dapr 1.19 SDK over real gRPC (each one failed before its fix)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import dapr.ext.workflow._durabletask.internal.protos as pb
import grpc
import pytest
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs

from budeval.errors import ValidationError
from budeval.sidecar.embedded import EmbeddedSidecar
from tests.sidecar.test_embedded_versioning import _fresh
from tests.support import wait_until

RAN: list[str] = []  # what the activities ran, in order


def note(ctx: wf.WorkflowActivityContext, step: str) -> str:
    RAN.append(f"{ctx.workflow_id}:{step}")
    return step


def _ran(iid: str) -> list[str]:
    return [s.split(":", 1)[1] for s in RAN if s.startswith(iid + ":")]


def old(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    yield ctx.call_activity("note", input="old-first")
    yield ctx.wait_for_external_event("go")
    yield ctx.call_activity("note", input="old-last")
    return "old"


def new(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    yield ctx.call_activity("note", input="new-first")
    yield ctx.wait_for_external_event("go")
    yield ctx.call_activity("note", input="new-last")
    return "new"


@contextmanager
def worker(port: int, *regs: tuple[Callable[..., Any], str, bool]) -> Iterator[wf.WorkflowRuntime]:
    runtime = wf.WorkflowRuntime(host="127.0.0.1", port=str(port))
    runtime.register_activity(_fresh(note, "note"), name="note")
    for fn, version, latest in regs:
        runtime.register_versioned_workflow(_fresh(fn, version), name="flow", version_name=version, is_latest=latest)
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.shutdown()


@contextmanager
def client(port: int) -> Iterator[wf.DaprWorkflowClient]:
    c = wf.DaprWorkflowClient(host="127.0.0.1", port=str(port))
    try:
        yield c
    finally:
        c.close()


def _status(c: wf.DaprWorkflowClient, iid: str) -> Any:
    state = c.get_workflow_state(iid)
    return None if state is None else state.runtime_status


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[EmbeddedSidecar]:
    RAN.clear()
    sc = EmbeddedSidecar(tmp_path / "state.db").start()
    try:
        yield sc
    finally:
        sc.stop()


def test_resume_of_an_instance_suspended_then_stalled_is_not_lost(sidecar: EmbeddedSidecar) -> None:
    """Suspend, the suspension's turn stalls on a worker lacking the version, resume: the resume must count, so a
    worker with the version runs the instance to its end once it connects."""
    port = sidecar.grpc_port
    with client(port) as c:
        with worker(port, (old, "v1", True)):
            c.schedule_new_workflow("flow", instance_id="sus")
            wait_until(lambda: _ran("sus") == ["old-first"], what="the first step")
        with worker(port, (new, "v2", True)):
            c.pause_workflow("sus")
            wait_until(lambda: _status(c, "sus") == wf.WorkflowStatus.STALLED, what="the suspension's turn to stall")
            c.resume_workflow("sus")
            c.raise_workflow_event("sus", "go")
            with worker(port, (old, "v1", False), (new, "v2", True)):
                state = c.wait_for_workflow_completion("sus", timeout_in_seconds=30)
    assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == "old"
    assert _ran("sus") == ["old-first", "old-last"]


def test_a_suspended_instance_that_stalled_shows_suspended_once_a_worker_runs_it(sidecar: EmbeddedSidecar) -> None:
    port = sidecar.grpc_port
    with client(port) as c:
        with worker(port, (old, "v1", True)):
            c.schedule_new_workflow("flow", instance_id="sus2")
            wait_until(lambda: _ran("sus2") == ["old-first"], what="the first step")
        with worker(port, (new, "v2", True)):
            c.pause_workflow("sus2")
            wait_until(lambda: _status(c, "sus2") == wf.WorkflowStatus.STALLED, what="the suspension's turn to stall")
        with worker(port, (old, "v1", True)):
            wait_until(lambda: _status(c, "sus2") == wf.WorkflowStatus.SUSPENDED, what="SUSPENDED after the turn ran")
            c.resume_workflow("sus2")
            c.raise_workflow_event("sus2", "go")
            state = c.wait_for_workflow_completion("sus2", timeout_in_seconds=30)
    assert state is not None and json.loads(state.serialized_output) == "old"


def cycle_v1(ctx: wf.DaprWorkflowContext, generation: Any) -> Any:
    yield ctx.call_activity("note", input=f"old-{generation}")
    yield ctx.wait_for_external_event("go")
    ctx.continue_as_new(1)
    return None


def cycle_v2(ctx: wf.DaprWorkflowContext, generation: Any) -> Any:
    yield ctx.call_activity("note", input=f"new-{generation}")
    yield ctx.wait_for_external_event("go")
    return "new"


def test_a_new_generation_runs_on_the_worker_its_old_version_stalled_on(sidecar: EmbeddedSidecar) -> None:
    """A v1 instance stalls on a v2-only worker; a worker with v1 runs it on until it continues as new (the new
    generation starts on v2) and leaves: the v2-only worker, still connected, must run the new generation."""
    port = sidecar.grpc_port
    with client(port) as c:
        with worker(port, (cycle_v1, "v1", True)):
            c.schedule_new_workflow("flow", instance_id="cy", input=0)
            wait_until(lambda: _ran("cy") == ["old-0"], what="the first generation's step")
        with worker(port, (cycle_v2, "v2", True)):
            c.raise_workflow_event("cy", "go")
            wait_until(lambda: _status(c, "cy") == wf.WorkflowStatus.STALLED, what="the instance to stall")
            with worker(port, (cycle_v1, "v1", False), (cycle_v2, "v2", True)):
                wait_until(lambda: _ran("cy") == ["old-0", "new-1"], what="the new generation's step")
            c.raise_workflow_event("cy", "go")
            state = c.wait_for_workflow_completion("cy", timeout_in_seconds=30)
    assert state is not None and json.loads(state.serialized_output) == "new"


def test_get_instance_reports_the_version_of_an_ended_instance_too(sidecar: EmbeddedSidecar) -> None:
    port = sidecar.grpc_port
    stub = stubs.TaskHubSidecarServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    with client(port) as c, worker(port, (old, "v1", False), (new, "v2", True)):
        c.schedule_new_workflow("flow", instance_id="done")
        wait_until(lambda: _ran("done") == ["new-first"], what="the first step")
        assert stub.GetInstance(pb.GetInstanceRequest(instanceId="done")).workflowState.version.value == "v2"
        c.raise_workflow_event("done", "go")
        state = c.wait_for_workflow_completion("done", timeout_in_seconds=30)
        assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED
        assert stub.GetInstance(pb.GetInstanceRequest(instanceId="done")).workflowState.version.value == "v2"


@pytest.mark.parametrize("spec", ["beta=abc", "=0", "beta=70000"])
def test_the_standalone_sidecar_refuses_a_bad_extra_app_with_a_clear_message(tmp_path: Path, spec: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "budeval.sidecar", "--state", str(tmp_path / "s.db"),
                           "--extra-app", spec], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--extra-app" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "s.db").exists()


def test_an_empty_app_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="invalid app id"):
        EmbeddedSidecar(tmp_path / "s.db", apps={"": 0})
