"""Several apps on one embedded sidecar (``app_id=`` routing) and history propagation (``PropagationScope``), driven
by the unmodified dapr 1.19 SDK over real gRPC: each app's worker connects to its own port, as each Dapr app talks to
its own daprd."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import pytest

from budeval.sidecar.embedded import EmbeddedSidecar

SEEN: dict[str, Any] = {}


# ---- app "front": the caller ----------------------------------------------------------------------------------------
def front_flow(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    mine = yield ctx.call_activity("front_step", input="x")
    child = yield ctx.call_child_workflow("middle_flow", input=mine, app_id="middle",
                                          instance_id=f"{ctx.instance_id}-child")
    return {"app": ctx.app_id, "child": child}


def front_step(ctx: wf.WorkflowActivityContext, value: str) -> str:
    return f"front({value})"


def to_nowhere(ctx: wf.DaprWorkflowContext, what: str) -> Any:
    try:
        if what == "activity":
            yield ctx.call_activity("anything", input=None, app_id="nowhere")
        else:
            yield ctx.call_child_workflow("anything", input=None, app_id="nowhere")
    except wf.TaskFailedError as exc:
        return f"{exc.details.error_type}: {exc}"  # type: ignore[attr-defined]
    return "no error"


# ---- app "middle": a child workflow that calls an activity in a third app -------------------------------------------
def middle_flow(ctx: wf.DaprWorkflowContext, value: str) -> Any:
    back = yield ctx.call_activity("back_step", input=value, app_id="back")
    return {"app": ctx.app_id, "back": back}


# ---- app "back": the activity ----------------------------------------------------------------------------------
def back_step(ctx: wf.WorkflowActivityContext, value: str) -> str:
    return f"back({value})"


# ---- propagation (one app) -------------------------------------------------------------------------------------------
def checkout(ctx: wf.DaprWorkflowContext, merchant: str) -> Any:
    yield ctx.call_activity("validate", input=merchant)
    paid = yield ctx.call_child_workflow("pay", input=None, instance_id=f"{ctx.instance_id}-pay",
                                         propagation=wf.PropagationScope.OWN_HISTORY)
    plain = yield ctx.call_activity("inspect", input="plain")
    return {"paid": paid, "plain": plain}


def pay(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    history = ctx.get_propagated_history()
    chain = [(w.app_id, w.instance_id, w.name) for w in history.get_workflows()] if history else None
    validate = history.get_workflows()[-1].get_last_activity_by_name("validate") if history else None
    yield ctx.call_activity("inspect", input="lineage", propagation=wf.PropagationScope.LINEAGE)
    yield ctx.call_activity("inspect", input="own", propagation=wf.PropagationScope.OWN_HISTORY)
    return {"chain": chain, "validated": validate.output if validate else None,
            "completed": validate.completed if validate else None}


def validate(ctx: wf.WorkflowActivityContext, merchant: str) -> dict[str, Any]:
    return {"merchant": merchant, "ok": True}


def inspect(ctx: wf.WorkflowActivityContext, label: str) -> str:
    history = ctx.get_propagated_history()
    SEEN[label] = None if history is None else {
        "scope": history.scope.name,
        "chain": [(w.app_id, w.name) for w in history.get_workflows()],
        "child_created": bool(history.get_workflows()[0].get_child_workflows_by_name("pay")),
    }
    return label


def cycle_parent(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    return (yield ctx.call_child_workflow("cycler", input=0, instance_id=f"{ctx.instance_id}-c",
                                          propagation=wf.PropagationScope.LINEAGE))


def cycler(ctx: wf.DaprWorkflowContext, generation: int) -> Any:
    if generation == 0:
        yield ctx.call_activity("validate", input="gen0")
        ctx.continue_as_new(1)
        return None
    return (yield ctx.call_activity("inspect", input="cycled", propagation=wf.PropagationScope.LINEAGE))


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedSidecar]:
    """One sidecar for the module (the SDK lets a function be registered once per process)."""
    state = tmp_path_factory.mktemp("apps") / "state.db"
    sidecar = EmbeddedSidecar(state, app_id="front", apps={"middle": 0, "back": 0}).start()
    runtimes = {name: wf.WorkflowRuntime(host="127.0.0.1", port=str(sidecar.app_ports[name]))
                for name in ("front", "middle", "back")}
    runtimes["front"].register_workflow(front_flow)
    runtimes["front"].register_workflow(to_nowhere)
    runtimes["front"].register_activity(front_step)
    runtimes["front"].register_workflow(checkout)
    runtimes["front"].register_workflow(pay)
    runtimes["front"].register_activity(validate)
    runtimes["front"].register_activity(inspect)
    runtimes["front"].register_workflow(cycle_parent)
    runtimes["front"].register_workflow(cycler)
    runtimes["middle"].register_workflow(middle_flow)
    runtimes["back"].register_activity(back_step)
    for runtime in runtimes.values():
        runtime.start()
    try:
        yield sidecar
    finally:
        for runtime in runtimes.values():
            runtime.shutdown()
        sidecar.stop()


def _run(sidecar: EmbeddedSidecar, app: str, name: str, data: Any, iid: str) -> Any:
    client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.app_ports[app]))
    try:
        client.schedule_new_workflow(name, input=data, instance_id=iid)
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=30)
    finally:
        client.close()
    assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED, state
    return json.loads(state.serialized_output)


def test_work_items_go_to_the_worker_of_the_target_app(apps: EmbeddedSidecar) -> None:
    """Each function is registered in one app only: a misrouted work item would fail as "not registered"."""
    assert _run(apps, "front", "front_flow", None, "multi-1") == {
        "app": "front", "child": {"app": "middle", "back": "back(front(x))"}}
    assert apps.engine is not None and apps.engine.get("multi-1-child").app_id == "middle"  # type: ignore[union-attr]


@pytest.mark.parametrize("what", ["activity", "child"])
def test_a_call_to_an_app_not_served_fails_at_once(apps: EmbeddedSidecar, what: str) -> None:
    message = _run(apps, "front", "to_nowhere", what, f"nowhere-{what}")
    assert "AppNotFound" in message and "'nowhere'" in message and "back, front, middle" in message


def test_a_workflow_started_through_an_apps_port_runs_on_that_app(apps: EmbeddedSidecar) -> None:
    assert _run(apps, "middle", "middle_flow", "direct", "direct-1") == {"app": "middle", "back": "back(direct)"}


def test_propagated_history_reaches_children_and_activities(apps: EmbeddedSidecar) -> None:
    SEEN.clear()
    out = _run(apps, "front", "checkout", "m-42", "shop-1")
    # OWN_HISTORY to the child: the parent's chunk, with the activity it had completed
    assert out["paid"]["chain"] == [["front", "shop-1", "checkout"]]
    assert out["paid"]["completed"] is True and json.loads(out["paid"]["validated"]) == {"merchant": "m-42", "ok": True}
    # LINEAGE from the child: the parent's chunk (up to the child's creation), then the child's own
    assert SEEN["lineage"]["scope"] == "LINEAGE" and SEEN["lineage"]["child_created"] is True
    assert SEEN["lineage"]["chain"] == [("front", "checkout"), ("front", "pay")]
    assert SEEN["own"]["scope"] == "OWN_HISTORY"
    assert SEEN["own"]["chain"] == [("front", "pay")]
    assert SEEN["plain"] is None  # no scope, no history


def test_propagated_history_survives_continue_as_new(apps: EmbeddedSidecar) -> None:
    """A child that received LINEAGE and continued as new passes on the chain plus its first generation's history."""
    SEEN.clear()
    assert _run(apps, "front", "cycle_parent", None, "cycle-1") == "cycled"
    assert SEEN["cycled"]["scope"] == "LINEAGE"
    assert SEEN["cycled"]["chain"] == [("front", "cycle_parent"), ("front", "cycler"), ("front", "cycler")]


def test_the_standalone_sidecar_serves_extra_apps(tmp_path: Path) -> None:
    """``python -m budeval.sidecar --app-id A --extra-app B``: one JSON line names each app's port; a worker of B
    on B's port runs B's workflow."""
    proc = subprocess.Popen([sys.executable, "-m", "budeval.sidecar", "--state", str(tmp_path / "s.db"),
                             "--app-id", "alpha", "--extra-app", "beta"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ports = json.loads(proc.stdout.readline())
        assert set(ports["apps"]) == {"alpha", "beta"} and ports["apps"]["alpha"] == ports["grpc_port"]
        runtime = wf.WorkflowRuntime(host="127.0.0.1", port=str(ports["apps"]["beta"]))
        runtime.register_workflow(lambda ctx, _: ctx.app_id, name="who")
        runtime.start()
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(ports["apps"]["beta"]))
        try:
            client.schedule_new_workflow("who", instance_id="who-1")
            state = client.wait_for_workflow_completion("who-1", timeout_in_seconds=30)
            assert state is not None and json.loads(state.serialized_output) == "beta"
        finally:
            client.close()
            runtime.shutdown()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
