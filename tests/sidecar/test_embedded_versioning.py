"""Workflow versioning on the embedded sidecar, driven by the unmodified dapr 1.19 SDK over real gRPC: versioned
registrations and ``is_patched`` keep a running instance on the code it started with across a worker upgrade, and
an instance whose worker lacks its version or patches stalls (STALLED + ``executionStalled``) until a worker with
the right code connects, also after a sidecar restart."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import dapr.ext.workflow._durabletask.internal.protos as pb
import grpc
import pytest
from dapr.ext.workflow._durabletask.client import TaskHubGrpcClient

from budeval.sidecar import versioning
from budeval.sidecar.embedded import EmbeddedSidecar
from tests.support import wait_until

STEPS: list[str] = []  # what the activities ran, in order (one worker at a time in these tests)


def _fresh(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """A new function object per registration (the SDK marks a registered function; one runtime each)."""

    def registered(ctx: Any, payload: Any = None) -> Any:
        return fn(ctx, payload)

    registered.__name__ = registered.__qualname__ = name
    return registered


def record(ctx: wf.WorkflowActivityContext, step: str) -> str:
    STEPS.append(f"{ctx.workflow_id}:{step}")
    return step


def v1(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    yield ctx.call_activity("record", input="v1-first")
    yield ctx.wait_for_external_event("go")
    yield ctx.call_activity("record", input="v1-last")
    return "v1"


def v2(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    yield ctx.call_activity("record", input="v2-first")
    yield ctx.wait_for_external_event("go")
    yield ctx.call_activity("record", input="v2-middle")
    yield ctx.call_activity("record", input="v2-last")
    return "v2"


def unpatched(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    yield ctx.call_activity("record", input="start")
    yield ctx.wait_for_external_event("go")
    yield ctx.call_activity("record", input="old-end")
    return "old"


def patched(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    """``unpatched`` changed twice: a step before the wait and another end after it, each behind a patch."""
    yield ctx.call_activity("record", input="start")
    if ctx.is_patched("early-step"):
        yield ctx.call_activity("record", input="early")
    yield ctx.wait_for_external_event("go")
    if ctx.is_patched("new-end"):
        yield ctx.call_activity("record", input="new-end")
        return "new"
    yield ctx.call_activity("record", input="old-end")
    return "old"


def patch_dropped(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    """``patched`` after someone deleted its ``is_patched`` checks too early (instances had taken them)."""
    yield ctx.call_activity("record", input="start")
    yield ctx.wait_for_external_event("go")
    yield ctx.call_activity("record", input="new-end")
    return "new"


class TurnCounter(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Counts the worker's ``CompleteOrchestratorTask`` calls per instance (how often it was handed a turn)."""

    def __init__(self) -> None:
        self.turns: Counter[str] = Counter()

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if details.method.endswith("/CompleteOrchestratorTask"):
            self.turns[request.instanceId] += 1
        return continuation(details, request)


@contextmanager
def worker(port: int, register: Callable[[wf.WorkflowRuntime], None],
           counter: TurnCounter | None = None) -> Iterator[wf.WorkflowRuntime]:
    runtime = wf.WorkflowRuntime(host="127.0.0.1", port=str(port), interceptors=[counter] if counter else None)
    runtime.register_activity(_fresh(record, "record"), name="record")
    register(runtime)
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.shutdown()


def versions(*which: tuple[Callable[..., Any], str, bool]) -> Callable[[wf.WorkflowRuntime], None]:
    def register(runtime: wf.WorkflowRuntime) -> None:
        for fn, version, latest in which:
            runtime.register_versioned_workflow(_fresh(fn, version), name="flow", version_name=version,
                                                is_latest=latest)
    return register


def plain(fn: Callable[..., Any]) -> Callable[[wf.WorkflowRuntime], None]:
    def register(runtime: wf.WorkflowRuntime) -> None:
        runtime.register_workflow(_fresh(fn, "patchy"), name="patchy")
    return register


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[EmbeddedSidecar]:
    STEPS.clear()
    sc = EmbeddedSidecar(tmp_path / "state.db").start()
    try:
        yield sc
    finally:
        sc.stop()


@contextmanager
def client(port: int) -> Iterator[wf.DaprWorkflowClient]:
    c = wf.DaprWorkflowClient(host="127.0.0.1", port=str(port))
    try:
        yield c
    finally:
        c.close()


def _history(port: int, iid: str) -> list[Any]:
    return list(TaskHubGrpcClient(host_address=f"127.0.0.1:{port}").get_instance_history(iid))


def _steps(iid: str) -> list[str]:
    return [s.split(":", 1)[1] for s in STEPS if s.startswith(iid + ":")]


def _waiting(c: wf.DaprWorkflowClient, iid: str, first: str) -> None:
    wait_until(lambda: first in _steps(iid) and c.get_workflow_state(iid) is not None, what=f"{iid} to wait")


def _stalled(c: wf.DaprWorkflowClient, iid: str) -> bool:
    state = c.get_workflow_state(iid)
    return state is not None and state.runtime_status == wf.WorkflowStatus.STALLED


def _finish(c: wf.DaprWorkflowClient, iid: str) -> Any:
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=30)
    assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED, state
    return json.loads(state.serialized_output)


def test_a_running_instance_keeps_its_version_when_a_newer_one_ships(sidecar: EmbeddedSidecar) -> None:
    port = sidecar.grpc_port
    with client(port) as c:
        with worker(port, versions((v1, "v1", True))):
            c.schedule_new_workflow("flow", instance_id="old")
            _waiting(c, "old", "v1-first")
        with worker(port, versions((v1, "v1", False), (v2, "v2", True))):
            c.raise_workflow_event("old", "go")
            assert _finish(c, "old") == "v1"
            c.schedule_new_workflow("flow", instance_id="new")
            _waiting(c, "new", "v2-first")
            c.raise_workflow_event("new", "go")
            assert _finish(c, "new") == "v2"
    assert _steps("old") == ["v1-first", "v1-last"]
    assert _steps("new") == ["v2-first", "v2-middle", "v2-last"]
    started = [e.workflowStarted for e in _history(port, "old") if e.HasField("workflowStarted")]
    assert started and all(s.version.name == "v1" for s in started)


def test_is_patched_answers_as_at_first_execution(sidecar: EmbeddedSidecar) -> None:
    port = sidecar.grpc_port
    with client(port) as c:
        with worker(port, plain(unpatched)):
            c.schedule_new_workflow("patchy", instance_id="before")
            _waiting(c, "before", "start")
        with worker(port, plain(patched)):
            # "before" passed the early step's place without it (False on replay); it reaches "new-end" fresh (True)
            c.raise_workflow_event("before", "go")
            assert _finish(c, "before") == "new"
            c.schedule_new_workflow("patchy", instance_id="after")
            _waiting(c, "after", "early")
            with worker(port, plain(patched)):  # a second worker with the same code: still the recorded answers
                pass
            c.raise_workflow_event("after", "go")
            assert _finish(c, "after") == "new"
    assert _steps("before") == ["start", "new-end"]
    assert _steps("after") == ["start", "early", "new-end"]
    assert versioning.recorded_patches(_history(port, "before")) == ["new-end"]
    assert versioning.recorded_patches(_history(port, "after")) == ["early-step", "new-end"]


def test_missing_version_stalls_until_a_worker_with_it_connects(sidecar: EmbeddedSidecar) -> None:
    port = sidecar.grpc_port
    with client(port) as c:
        with worker(port, versions((v1, "v1", True))):
            c.schedule_new_workflow("flow", instance_id="stuck")
            _waiting(c, "stuck", "v1-first")
        counter = TurnCounter()
        with worker(port, versions((v2, "v2", True)), counter):  # v1 removed too early
            c.raise_workflow_event("stuck", "go")
            wait_until(lambda: _stalled(c, "stuck"), what="the instance to stall")
            c.raise_workflow_event("stuck", "go")  # more events wait with the first
            # a whole workflow on the same worker meanwhile: the stalled one is not handed to it again
            c.schedule_new_workflow("flow", instance_id="other")
            _waiting(c, "other", "v2-first")
            c.raise_workflow_event("other", "go")
            assert _finish(c, "other") == "v2"
            assert counter.turns["stuck"] == 1 and counter.turns["other"] >= 4
            assert _stalled(c, "stuck")
            stalls = [e.executionStalled for e in _history(port, "stuck") if e.HasField("executionStalled")]
            assert [(s.reason, s.description) for s in stalls] == [
                (pb.VERSION_NOT_AVAILABLE, "Version not available: v1")]
            # the v2-only worker stays connected; a worker that has v1 connects next to it and gets the instance
            with worker(port, versions((v1, "v1", False), (v2, "v2", True))):
                assert _finish(c, "stuck") == "v1"
    assert _steps("stuck") == ["v1-first", "v1-last"]
    kinds = [e.WhichOneof("eventType") for e in _history(port, "stuck")]
    assert kinds.count("executionStalled") == 1 and kinds.count("eventRaised") == 2, " ".join(kinds)


def test_patch_mismatch_stalls_and_resumes_after_a_sidecar_restart(tmp_path: Path) -> None:
    STEPS.clear()
    state = tmp_path / "state.db"
    with EmbeddedSidecar(state) as first, client(first.grpc_port) as c:
        with worker(first.grpc_port, plain(patched)):
            c.schedule_new_workflow("patchy", instance_id="mm")
            _waiting(c, "mm", "early")
        with worker(first.grpc_port, plain(patch_dropped)):
            c.raise_workflow_event("mm", "go")
            wait_until(lambda: _stalled(c, "mm"), what="the instance to stall")
            stall = [e.executionStalled for e in _history(first.grpc_port, "mm") if e.HasField("executionStalled")]
            assert [s.reason for s in stall] == [pb.PATCH_MISMATCH]
            assert "History patches: [early-step]" in stall[0].description
    assert "new-end" not in _steps("mm")
    with EmbeddedSidecar(state) as second, client(second.grpc_port) as c:
        assert _stalled(c, "mm")  # the status survived the restart
        with worker(second.grpc_port, plain(patched)):
            assert _finish(c, "mm") == "new"
    assert _steps("mm") == ["start", "early", "new-end"]


def test_a_stalled_instance_can_be_terminated_and_purged(sidecar: EmbeddedSidecar) -> None:
    port = sidecar.grpc_port
    with client(port) as c:
        with worker(port, versions((v1, "v1", True))):
            c.schedule_new_workflow("flow", instance_id="give-up")
            _waiting(c, "give-up", "v1-first")
        with worker(port, versions((v2, "v2", True))):
            c.raise_workflow_event("give-up", "go")
            wait_until(lambda: _stalled(c, "give-up"), what="the instance to stall")
            c.terminate_workflow("give-up")
            state = c.wait_for_workflow_completion("give-up", timeout_in_seconds=30)
            assert state is not None and state.runtime_status == wf.WorkflowStatus.TERMINATED
            c.purge_workflow("give-up")
            assert c.get_workflow_state("give-up") is None
        with worker(port, versions((v1, "v1", True))):  # the code comes back: nothing is left to run
            c.schedule_new_workflow("flow", instance_id="after-purge")
            _waiting(c, "after-purge", "v1-first")
    assert _steps("give-up") == ["v1-first"]


# ---- the decisions themselves (pure logic over hand-made protobufs) ------------------------------------------------

def _started(name: str = "", patches: tuple[str, ...] = ()) -> Any:
    return pb.HistoryEvent(workflowStarted=pb.WorkflowStartedEvent(version=pb.WorkflowVersion(name=name,
                                                                                              patches=patches)))


def _response(name: str = "", patches: tuple[str, ...] = (), unavailable: bool = False) -> Any:
    res = pb.WorkflowResponse(version=pb.WorkflowVersion(name=name, patches=patches))
    if unavailable:
        res.actions.append(pb.WorkflowAction(id=1, workflowVersionNotAvailable=pb.WorkflowVersionNotAvailableAction()))
    return res


def test_recorded_patches_are_compacted_and_a_prefix_is_required() -> None:
    history = [_started("v1", ("a",)), _started("v1", ("b", "a"))]
    assert versioning.recorded_patches(history) == ["a", "b", "a"]
    assert versioning.version_to_record(history, _response("v1", ("a", "b", "a", "c"))) == pb.WorkflowVersion(
        name="v1", patches=["c"])
    assert versioning.version_to_record(history, _response("", ("a", "b", "a"))) is None
    assert versioning.version_to_record([], pb.WorkflowResponse()) is None
    assert versioning.stall_reason(history, _response("v1", ("a", "b", "a", "c"))) is None
    reason, text = versioning.stall_reason(history, _response("v1", ("b", "a", "a"))) or (0, "")
    assert reason == pb.PATCH_MISMATCH and "[a, b, a]" in text and "[b, a, a]" in text
    assert versioning.stall_reason([], _response("", ("x",))) is None
    assert versioning.stall_reason(history, _response(unavailable=True)) == (
        pb.VERSION_NOT_AVAILABLE, "Version not available: v1")
