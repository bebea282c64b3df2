"""Workflow semantics of the embedded sidecar, driven by the unmodified dapr 1.19 WorkflowRuntime and
DaprWorkflowClient over real gRPC (the one sidecar workflow suite: it absorbed the former test_sdk_workflows.py)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import grpc
import pytest
from dapr.ext.workflow._durabletask.client import TaskHubGrpcClient

from budeval.sidecar.embedded import EmbeddedSidecar
from budeval.workflow.policies import BackoffPolicy
from tests.sidecar.embedded_support import Stack, running_stack
from tests.support import wait_until

CALLS: Counter[str] = Counter()
_LOCK = threading.Lock()


def _count(key: str) -> int:
    with _LOCK:
        CALLS[key] += 1
        return CALLS[key]


def greet(ctx: wf.WorkflowActivityContext, name: str) -> str:
    _count(f"greet:{ctx.workflow_id}")
    return f"hello {name}"


def flaky(ctx: wf.WorkflowActivityContext, fail_times: int) -> int:
    attempt = _count(f"flaky:{ctx.workflow_id}")
    if attempt <= fail_times:
        raise ConnectionError(f"transient failure {attempt}")
    return attempt


def broken(ctx: wf.WorkflowActivityContext, _: Any) -> None:
    _count(f"broken:{ctx.workflow_id}")
    raise ValueError("permanent: bad input")


FAST_RETRY = wf.RetryPolicy(first_retry_interval=timedelta(milliseconds=50), max_number_of_attempts=4)


def chain(ctx: wf.DaprWorkflowContext, names: list[str]) -> Any:
    out = []
    for name in names:
        out.append((yield ctx.call_activity(greet, input=name)))
    return out


def fan_out(ctx: wf.DaprWorkflowContext, names: list[str]) -> Any:
    out = []
    for name in names:
        out.append((yield ctx.call_activity(greet, input=name)))
    parallel = yield wf.when_all([ctx.call_activity(greet, input=f"p{i}") for i in range(5)])
    yield ctx.create_timer(timedelta(milliseconds=300))
    return out + parallel


def retrying(ctx: wf.DaprWorkflowContext, fail_times: int) -> Any:
    return (yield ctx.call_activity(flaky, input=fail_times, retry_policy=FAST_RETRY))


def non_retryable(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    policy = BackoffPolicy(first=timedelta(milliseconds=50), attempts=5)  # ValueError is listed as non-retryable
    try:
        yield ctx.call_activity(broken, input=None, retry_policy=policy)
    except wf.TaskFailedError as exc:
        return f"caught: {exc.details.error_type}"  # type: ignore[attr-defined]
    return "unreachable"


def failing(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    yield ctx.call_activity(broken, input=None)
    return "unreachable"


def sleeper(ctx: wf.DaprWorkflowContext, seconds: float) -> Any:
    before = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(seconds=seconds))
    return (ctx.current_utc_datetime - before).total_seconds()


def late_waiter(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    yield ctx.create_timer(timedelta(seconds=0.5))  # the event is raised while this timer runs
    return (yield ctx.wait_for_external_event("approve"))


def waiter(ctx: wf.DaprWorkflowContext, timeout_s: float) -> Any:
    ctx.set_custom_status("waiting")
    event = ctx.wait_for_external_event("approve")
    timer = ctx.create_timer(timedelta(seconds=timeout_s))
    winner = yield wf.when_any([event, timer])
    return {"approved": event.get_result()} if winner == event else "timeout"


def child(ctx: wf.DaprWorkflowContext, name: str) -> Any:
    if name == "fail":
        yield ctx.call_activity(broken, input=None)
    greeting = yield ctx.call_activity(greet, input=name)
    return greeting + "!"


def parent(ctx: wf.DaprWorkflowContext, names: list[str]) -> Any:
    tasks = [ctx.call_child_workflow(child, input=n, instance_id=f"{ctx.instance_id}-{n}") for n in names]
    results = yield wf.when_all(tasks)
    return results


def parent_catching(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    try:
        yield ctx.call_child_workflow(child, input="fail", instance_id=f"{ctx.instance_id}-c")
    except wf.TaskFailedError as exc:  # type: ignore[attr-defined]
        return f"child failed: {exc}"
    return "no failure"


def forever(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    return (yield ctx.wait_for_external_event("never"))


def parent_of_forever(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    return (yield ctx.call_child_workflow(forever, input=None, instance_id=f"{ctx.instance_id}-child"))


def counter(ctx: wf.DaprWorkflowContext, n: int) -> Any:
    if n < 3:
        yield ctx.call_activity(greet, input=f"round{n}")
        yield ctx.create_timer(timedelta(milliseconds=10))
        ctx.continue_as_new(n + 1)
        return None
    return {"n": n, "instance": ctx.instance_id}


ALL_WORKFLOWS = [chain, fan_out, retrying, non_retryable, failing, sleeper, late_waiter, waiter, child, parent,
                 parent_catching, forever, parent_of_forever, counter]


def _fresh(fn: Any) -> Any:
    """A new function object per runtime: the SDK marks what it registered and refuses it a second time."""

    def call(ctx: Any, value: Any) -> Any:
        return fn(ctx, value)

    return call


def _register(runtime: wf.WorkflowRuntime) -> None:
    for fn in ALL_WORKFLOWS:
        runtime.register_workflow(_fresh(fn), name=fn.__name__)
    for act in (greet, flaky, broken):
        runtime.register_activity(_fresh(act), name=act.__name__)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("sidecar") / "state.db", _register) as s:
        yield s


def _run(stack: Stack, fn: Any, value: Any, iid: str, timeout: int = 30) -> Any:
    stack.client.schedule_new_workflow(fn, input=value, instance_id=iid)
    state = stack.client.wait_for_workflow_completion(iid, timeout_in_seconds=timeout)
    assert state is not None
    return state


def test_activities_in_order_in_parallel_and_a_timer(stack: Stack) -> None:
    state = _run(stack, fan_out, ["a", "b", "c"], "chain-1")
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == ["hello a", "hello b", "hello c"] + [f"hello p{i}" for i in range(5)]
    assert CALLS["greet:chain-1"] == 8  # each activity ran once


def test_retry_policy_retries_then_succeeds(stack: Stack) -> None:
    state = _run(stack, retrying, 2, "retry-1")
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == 3  # two failures, then success on the third attempt
    assert CALLS["flaky:retry-1"] == 3


def test_retry_policy_gives_up_after_max_attempts(stack: Stack) -> None:
    state = _run(stack, retrying, 10, "retry-2")
    assert state.runtime_status == wf.WorkflowStatus.FAILED
    assert CALLS["flaky:retry-2"] == 4
    assert "transient failure 4" in state.failure_details.message


def test_non_retryable_error_fails_at_once(stack: Stack) -> None:
    """budeval's BackoffPolicy lists ValueError as non-retryable: one attempt, the workflow sees the error type."""
    state = _run(stack, non_retryable, None, "nonretry-1")
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == "caught: ValueError"
    assert CALLS["broken:nonretry-1"] == 1


def test_failure_without_retry_policy_runs_once_and_fails(stack: Stack) -> None:
    state = _run(stack, failing, None, "fail-1")
    assert state.runtime_status == wf.WorkflowStatus.FAILED
    assert "permanent: bad input" in state.failure_details.message
    assert CALLS["broken:fail-1"] == 1


def test_durable_timer_fires_not_before_due(stack: Stack) -> None:
    state = _run(stack, sleeper, 1.0, "timer-1")
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) >= 1.0


def test_event_raised_before_the_wait_is_kept(stack: Stack) -> None:
    stack.client.schedule_new_workflow(late_waiter, instance_id="early-1")
    stack.client.raise_workflow_event("early-1", "approve", data={"by": "ann"})
    state = stack.client.wait_for_workflow_completion("early-1", timeout_in_seconds=30)
    assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == {"by": "ann"}


def test_event_raised_while_waiting_wins_over_the_timeout(stack: Stack) -> None:
    stack.client.schedule_new_workflow(waiter, input=60, instance_id="wait-1")
    wait_until(lambda: (s := stack.client.get_workflow_state("wait-1")) and s.serialized_custom_status,
               what="the workflow to wait")
    stack.client.raise_workflow_event("wait-1", "APPROVE", data=7)  # event names are case-insensitive
    state = stack.client.wait_for_workflow_completion("wait-1", timeout_in_seconds=30)
    assert state is not None and json.loads(state.serialized_output) == {"approved": 7}


def test_event_wait_times_out_through_the_timer(stack: Stack) -> None:
    state = _run(stack, waiter, 0.3, "wait-2")
    assert json.loads(state.serialized_output) == "timeout"


def test_child_workflows_complete_into_the_parent(stack: Stack) -> None:
    state = _run(stack, parent, ["x", "y"], "parent-1")
    assert json.loads(state.serialized_output) == ["hello x!", "hello y!"]
    kid = stack.client.get_workflow_state("parent-1-x")
    assert kid is not None and kid.runtime_status == wf.WorkflowStatus.COMPLETED


def test_child_failure_reaches_the_parent(stack: Stack) -> None:
    state = _run(stack, parent_catching, None, "parent-2")
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert "child failed" in json.loads(state.serialized_output)
    assert stack.client.get_workflow_state("parent-2-c").runtime_status == wf.WorkflowStatus.FAILED


def test_terminate_is_recursive(stack: Stack) -> None:
    stack.client.schedule_new_workflow(parent_of_forever, instance_id="term-1")
    wait_until(lambda: stack.client.get_workflow_state("term-1-child"), what="the child to start")
    stack.client.terminate_workflow("term-1", output="stop")
    for iid in ("term-1", "term-1-child"):
        state = stack.client.wait_for_workflow_completion(iid, timeout_in_seconds=10)
        assert state is not None and state.runtime_status == wf.WorkflowStatus.TERMINATED, iid
    stack.client.raise_workflow_event("term-1-child", "never", data=1)  # discarded: the instance has ended
    assert stack.client.get_workflow_state("term-1-child").runtime_status == wf.WorkflowStatus.TERMINATED


def test_continue_as_new_restarts_with_new_input(stack: Stack) -> None:
    state = _run(stack, counter, 0, "can-1")
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == {"n": 3, "instance": "can-1"}
    assert CALLS["greet:can-1"] == 3  # one activity per execution, none repeated by the restarts
    history = stack.client.get_workflow_history("can-1")
    assert len(history) < 12  # only the last execution's history is kept


def test_purge_removes_only_finished_instances(stack: Stack) -> None:
    _run(stack, chain, ["p"], "purge-1")
    stack.client.purge_workflow("purge-1")
    assert stack.client.get_workflow_state("purge-1") is None
    stack.client.schedule_new_workflow(forever, instance_id="purge-2")
    with pytest.raises(grpc.RpcError) as err:
        stack.client.purge_workflow("purge-2")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stack.client.terminate_workflow("purge-2")
    stack.client.purge_workflow("purge-2")
    assert stack.client.get_workflow_state("purge-2") is None


def test_duplicate_start_refused_while_running_allowed_after_end(stack: Stack) -> None:
    stack.client.schedule_new_workflow(forever, instance_id="dup-1")
    with pytest.raises(grpc.RpcError) as err:
        stack.client.schedule_new_workflow(forever, instance_id="dup-1")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    stack.client.terminate_workflow("dup-1")
    stack.client.wait_for_workflow_completion("dup-1", timeout_in_seconds=10)
    state = _run(stack, chain, ["again"], "dup-1")
    assert json.loads(state.serialized_output) == ["hello again"]


def test_suspend_holds_events_until_resume(stack: Stack) -> None:
    stack.client.schedule_new_workflow(forever, instance_id="susp-1")
    stack.client.wait_for_workflow_start("susp-1", timeout_in_seconds=10)
    stack.client.pause_workflow("susp-1")
    assert stack.client.get_workflow_state("susp-1").runtime_status == wf.WorkflowStatus.SUSPENDED
    stack.client.raise_workflow_event("susp-1", "never", data="x")
    with pytest.raises(TimeoutError):
        stack.client.wait_for_workflow_completion("susp-1", timeout_in_seconds=1)
    stack.client.resume_workflow("susp-1")
    state = stack.client.wait_for_workflow_completion("susp-1", timeout_in_seconds=10)
    assert state is not None and json.loads(state.serialized_output) == "x"


def test_unknown_instance(stack: Stack) -> None:
    assert stack.client.get_workflow_state("nope") is None
    with pytest.raises(grpc.RpcError) as err:
        stack.client.raise_workflow_event("nope", "x")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_state_survives_a_clean_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "state.db"
    with running_stack(state_file, _register) as first:
        first.client.schedule_new_workflow(waiter, input=300, instance_id="restart-1")
        wait_until(lambda: (s := first.client.get_workflow_state("restart-1")) and s.serialized_custom_status,
                   what="the workflow to wait")
    with running_stack(state_file, _register) as second:
        second.client.raise_workflow_event("restart-1", "approve", data="later")
        state = second.client.wait_for_workflow_completion("restart-1", timeout_in_seconds=30)
        assert state is not None and json.loads(state.serialized_output) == {"approved": "later"}
        finished = [e.event_type.name for e in second.client.get_workflow_history("restart-1")]
    assert finished[0] == "WORKFLOW_STARTED" and finished[-1] == "EXECUTION_COMPLETED" and "EVENT_RAISED" in finished
    with running_stack(state_file, _register) as third:  # an ended instance's history is read back from SQLite
        assert [e.event_type.name for e in third.client.get_workflow_history("restart-1")] == finished
        assert third.client.get_workflow_state("restart-1").runtime_status == wf.WorkflowStatus.COMPLETED


def test_work_queued_before_a_restart_is_dispatched_after_it(tmp_path: Path) -> None:
    """Started while no worker was connected: the ExecutionStarted event waits in the inbox across the restart."""
    state_file = tmp_path / "state.db"
    sidecar = EmbeddedSidecar(state_file).start()
    try:
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
        client.schedule_new_workflow(chain, input=["queued"], instance_id="queued-1")
        client.close()
    finally:
        sidecar.stop()
    with running_stack(state_file, _register) as later:
        state = later.client.wait_for_workflow_completion("queued-1", timeout_in_seconds=30)
        assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED
        assert json.loads(state.serialized_output) == ["hello queued"]


def test_history_of_a_finished_instance_and_a_recursive_purge(stack: Stack) -> None:
    """GetInstanceHistory (the SDK's own gRPC client) of a finished instance returns all of it; a recursive purge
    removes the children too."""
    _run(stack, parent, ["x", "y"], "hist-1")
    hub = TaskHubGrpcClient(host_address=f"127.0.0.1:{stack.sidecar.grpc_port}")
    kinds = [e.WhichOneof("eventType") for e in hub.get_instance_history("hist-1")]
    assert kinds[:2] == ["workflowStarted", "executionStarted"] and kinds[-1] == "executionCompleted"
    assert kinds.count("childWorkflowInstanceCreated") == 2
    stack.client.purge_workflow("hist-1", recursive=True)
    for iid in ("hist-1", "hist-1-x", "hist-1-y"):
        assert stack.client.get_workflow_state(iid) is None, iid
