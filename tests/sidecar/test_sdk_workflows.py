"""The unmodified dapr 1.19 WorkflowRuntime and DaprWorkflowClient against the embedded sidecar, over real gRPC."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import grpc
import pytest
from dapr.ext.workflow._durabletask.client import TaskHubGrpcClient

from budeval.workflow.policies import BackoffPolicy
from tests.sidecar.sdk_helpers import running

TIMEOUT = 60
calls: dict[str, int] = {}
_lock = threading.Lock()


def _count(name: str) -> int:
    with _lock:
        calls[name] = calls.get(name, 0) + 1
        return calls[name]


def greet(ctx: Any, name: str) -> str:
    _count("greet")
    return f"hello {name}"


def flaky(ctx: Any, key: str) -> str:
    if _count(key) < 3:
        raise RuntimeError("transient")
    return "ok after retries"


def broken(ctx: Any, key: str) -> str:
    _count(key)
    raise ValueError("bad input")


def activities_workflow(ctx: wf.DaprWorkflowContext, names: list[str]) -> Any:
    out = []
    for n in names:
        out.append((yield ctx.call_activity(greet, input=n)))
    parallel = yield wf.when_all([ctx.call_activity(greet, input=f"p{i}") for i in range(5)])
    yield ctx.create_timer(timedelta(milliseconds=300))
    return out + parallel


def retry_workflow(ctx: wf.DaprWorkflowContext, key: str) -> Any:
    policy = wf.RetryPolicy(first_retry_interval=timedelta(milliseconds=50), max_number_of_attempts=5)
    return (yield ctx.call_activity(flaky, input=key, retry_policy=policy))


def non_retryable_workflow(ctx: wf.DaprWorkflowContext, key: str) -> Any:
    policy = BackoffPolicy(first=timedelta(milliseconds=50), attempts=5)  # ValueError is listed as non-retryable
    try:
        yield ctx.call_activity(broken, input=key, retry_policy=policy)
    except wf.TaskFailedError as exc:
        return f"caught: {exc.details.error_type}"  # type: ignore[attr-defined]
    return "unreachable"


def failing_workflow(ctx: wf.DaprWorkflowContext, key: str) -> Any:
    yield ctx.call_activity(broken, input=key)
    return "unreachable"


def event_workflow(ctx: wf.DaprWorkflowContext, timeout_s: float) -> Any:
    yield ctx.call_activity(greet, input="before-wait")
    ctx.set_custom_status("waiting")  # committed with the wait's actions: tests know the orchestrator is parked
    event = ctx.wait_for_external_event("approve")
    timer = ctx.create_timer(timedelta(seconds=timeout_s))
    winner = yield wf.when_any([event, timer])
    if winner is event:
        return {"approved": event.get_result()}
    return {"timed_out": True}


def child_workflow(ctx: wf.DaprWorkflowContext, n: int) -> Any:
    return (yield ctx.call_activity(greet, input=f"child{n}"))


def parent_workflow(ctx: wf.DaprWorkflowContext, n: int) -> Any:
    iid = ctx.instance_id
    tasks = [ctx.call_child_workflow(child_workflow, input=i, instance_id=f"{iid}-c{i}") for i in range(n)]
    return (yield wf.when_all(tasks))


def waiting_child(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    return (yield ctx.wait_for_external_event("never"))


def waiting_parent(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    return (yield ctx.call_child_workflow(waiting_child, instance_id=f"{ctx.instance_id}-child"))


def counter_workflow(ctx: wf.DaprWorkflowContext, n: int) -> Any:
    if n < 4:
        yield ctx.call_activity(greet, input=f"round{n}")
        ctx.continue_as_new(n + 1)
        return None
    return n


ALL_WORKFLOWS: list[Callable[..., Any]] = [
    activities_workflow,
    retry_workflow,
    non_retryable_workflow,
    failing_workflow,
    event_workflow,
    child_workflow,
    parent_workflow,
    waiting_child,
    waiting_parent,
    counter_workflow,
]
ALL_ACTIVITIES: list[Callable[..., Any]] = [greet, flaky, broken]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    state = tmp_path_factory.mktemp("sidecar") / "state.db"
    with running(state, ALL_WORKFLOWS, ALL_ACTIVITIES) as (sidecar, client):
        yield sidecar, client


def _done(client: wf.DaprWorkflowClient, iid: str) -> Any:
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=TIMEOUT)
    assert state is not None
    return state


def test_activities_parallel_and_timer(stack: Any) -> None:
    _, client = stack
    iid = client.schedule_new_workflow(activities_workflow, input=["a", "b"], instance_id="acts")
    state = _done(client, iid)
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert (
        state.serialized_output == '["hello a", "hello b", "hello p0", "hello p1", "hello p2", "hello p3", "hello p4"]'
    )


def test_retry_policy_retries_then_succeeds(stack: Any) -> None:
    _, client = stack
    iid = client.schedule_new_workflow(retry_workflow, input="flaky-1", instance_id="retry")
    state = _done(client, iid)
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert state.serialized_output == '"ok after retries"'
    assert calls["flaky-1"] == 3


def test_non_retryable_error_fails_at_once(stack: Any) -> None:
    _, client = stack
    iid = client.schedule_new_workflow(non_retryable_workflow, input="perm-1", instance_id="nonretry")
    state = _done(client, iid)
    assert state.serialized_output == '"caught: ValueError"'
    assert calls["perm-1"] == 1


def test_unhandled_failure_fails_the_workflow(stack: Any) -> None:
    _, client = stack
    iid = client.schedule_new_workflow(failing_workflow, input="perm-2", instance_id="failing")
    state = _done(client, iid)
    assert state.runtime_status == wf.WorkflowStatus.FAILED
    assert state.failure_details is not None and "bad input" in state.failure_details.message


def test_event_raised_before_the_wait_is_kept(stack: Any) -> None:
    _, client = stack
    iid = client.schedule_new_workflow(event_workflow, input=30, instance_id="early-event")
    client.raise_workflow_event(iid, "approve", data={"by": "early"})  # the workflow may not even have started
    state = _done(client, iid)
    assert state.serialized_output == '{"approved": {"by": "early"}}'


def test_event_raised_after_the_wait(stack: Any) -> None:
    _, client = stack
    iid = client.schedule_new_workflow(event_workflow, input=30, instance_id="late-event")
    client.wait_for_workflow_start(iid, timeout_in_seconds=TIMEOUT)
    # Wait until the orchestrator has actually parked on the event.
    _wait_for(lambda: client.get_workflow_state(iid).serialized_custom_status in ("waiting", '"waiting"'))
    client.raise_workflow_event(iid, "approve", data={"by": "late"})
    state = _done(client, iid)
    assert state.serialized_output == '{"approved": {"by": "late"}}'


def test_event_timeout_fires_the_timer(stack: Any) -> None:
    _, client = stack
    iid = client.schedule_new_workflow(event_workflow, input=0.3, instance_id="no-event")
    state = _done(client, iid)
    assert state.serialized_output == '{"timed_out": true}'


def test_child_workflows(stack: Any) -> None:
    _, client = stack
    iid = client.schedule_new_workflow(parent_workflow, input=3, instance_id="parent")
    state = _done(client, iid)
    assert state.serialized_output == '["hello child0", "hello child1", "hello child2"]'
    child = client.get_workflow_state("parent-c1")
    assert child is not None and child.runtime_status == wf.WorkflowStatus.COMPLETED


def test_terminate_is_recursive(stack: Any) -> None:
    _, client = stack
    iid = client.schedule_new_workflow(waiting_parent, instance_id="term")
    _wait_for(lambda: client.get_workflow_state("term-child").runtime_status == wf.WorkflowStatus.RUNNING)
    client.terminate_workflow(iid, output="stop", recursive=True)
    state = _done(client, iid)
    assert state.runtime_status == wf.WorkflowStatus.TERMINATED
    child = client.wait_for_workflow_completion("term-child", timeout_in_seconds=TIMEOUT)
    assert child is not None and child.runtime_status == wf.WorkflowStatus.TERMINATED


def test_continue_as_new(stack: Any) -> None:
    _, client = stack
    iid = client.schedule_new_workflow(counter_workflow, input=0, instance_id="counter")
    state = _done(client, iid)
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert state.serialized_output == "4"


def test_purge_removes_a_finished_instance_and_refuses_a_running_one(stack: Any) -> None:
    _, client = stack
    iid = client.schedule_new_workflow(activities_workflow, input=[], instance_id="purge-me")
    _done(client, iid)
    client.purge_workflow(iid)
    assert client.get_workflow_state(iid) is None
    running_id = client.schedule_new_workflow(event_workflow, input=60, instance_id="purge-running")
    with pytest.raises(grpc.RpcError) as err:
        client.purge_workflow(running_id)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    client.terminate_workflow(running_id)
    _done(client, running_id)


def test_duplicate_start_refused_while_running_allowed_when_finished(stack: Any) -> None:
    _, client = stack
    iid = client.schedule_new_workflow(event_workflow, input=60, instance_id="dup")
    with pytest.raises(grpc.RpcError) as err:
        client.schedule_new_workflow(event_workflow, input=60, instance_id="dup")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    client.raise_workflow_event(iid, "approve", data=1)
    assert _done(client, iid).serialized_output == '{"approved": 1}'
    again = client.schedule_new_workflow(event_workflow, input=60, instance_id="dup")
    client.raise_workflow_event(again, "approve", data=2)
    assert _done(client, again).serialized_output == '{"approved": 2}'


def test_suspend_and_resume(stack: Any) -> None:
    _, client = stack
    iid = client.schedule_new_workflow(event_workflow, input=60, instance_id="susp")
    client.wait_for_workflow_start(iid, timeout_in_seconds=TIMEOUT)
    client.pause_workflow(iid)
    assert client.get_workflow_state(iid).runtime_status == wf.WorkflowStatus.SUSPENDED
    client.raise_workflow_event(iid, "approve", data="while-suspended")
    client.resume_workflow(iid)
    assert _done(client, iid).serialized_output == '{"approved": "while-suspended"}'


def test_unknown_instance(stack: Any) -> None:
    _, client = stack
    assert client.get_workflow_state("nobody") is None
    with pytest.raises(grpc.RpcError) as err:
        client.raise_workflow_event("nobody", "x")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def _wait_for(check: Any, timeout: float = TIMEOUT) -> None:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if check():
                return
        except AttributeError:
            pass
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_state_survives_a_clean_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with running(state, [event_workflow], [greet]) as (_, client):
        client.schedule_new_workflow(event_workflow, input=60, instance_id="restart")
        client.wait_for_workflow_start("restart", timeout_in_seconds=TIMEOUT)
    with running(state, [event_workflow], [greet]) as (_, client):
        client.raise_workflow_event("restart", "approve", data="after restart")
        assert _done(client, "restart").serialized_output == '{"approved": "after restart"}'


def test_work_queued_before_a_restart_is_dispatched_after_it(tmp_path: Path) -> None:
    """Started while no worker was connected: the ExecutionStarted event waits in the inbox across the restart."""
    from budeval.sidecar import EmbeddedSidecar

    state = tmp_path / "state.db"
    sidecar = EmbeddedSidecar(state)
    sidecar.start()
    try:
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
        client.schedule_new_workflow(activities_workflow, input=["queued"], instance_id="queued")
    finally:
        sidecar.stop()
    with running(state, [activities_workflow], [greet]) as (_, client):
        state_after = _done(client, "queued")
        assert state_after.runtime_status == wf.WorkflowStatus.COMPLETED
        assert state_after.serialized_output is not None and "hello queued" in state_after.serialized_output


def test_history_of_a_finished_instance_is_read_back(stack: Any) -> None:
    """GetInstanceHistory of a finished instance returns all of it; a recursive purge removes the children."""
    sidecar, client = stack
    iid = client.schedule_new_workflow(parent_workflow, input=2, instance_id="hist")
    _done(client, iid)
    events = TaskHubGrpcClient(host_address=f"127.0.0.1:{sidecar.grpc_port}").get_instance_history(iid)
    kinds = [e.WhichOneof("eventType") for e in events]
    assert kinds[:2] == ["workflowStarted", "executionStarted"] and kinds[-1] == "executionCompleted"
    assert kinds.count("childWorkflowInstanceCreated") == 2
    client.purge_workflow(iid, recursive=True)
    assert client.get_workflow_state("hist-c0") is None  # the recursive purge found the children in SQLite
