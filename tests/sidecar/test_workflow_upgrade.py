"""An upgrade that changes the evaluation workflow's steps, without draining (issue 21).

Version N is budeval's workflow as it ships (``WORKFLOW_VERSIONS``). Evaluations start on it; the service (worker and
embedded sidecar) stops with one evaluation stopped between two steps (prepare's result is in the sidecar, the turn
that acts on it never committed) and one waiting on its run; it comes back with version N+1 code, a change of steps:
a new first step in both workflows, shipped either as a new versioned registration or as an ``is_patched`` branch in
the same version (the two ways docs/workflow.md names). Both in-flight evaluations finish on their recorded path
(never the new step; replaying them on the new code alone would fail as non-deterministic or take the new step
halfway) and a new evaluation takes the new path; so does a child workflow the stopped evaluation starts after the
upgrade (a new instance starts on the latest code: a new version keeps the contract between the two workflows).

Real: the unmodified dapr SDK, the embedded sidecar (restarted on its state file), chDB, the folder archive, the
parser, events through the sidecar. Only the job is instant (the benchmark's backend, which copies a fixture run).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import grpc
import httpx
import pytest
from dapr.ext.workflow._durabletask.client import TaskHubGrpcClient

from budeval.backends.base import RunState
from budeval.config import Settings
from budeval.engine.catalog import load_suites
from budeval.engine.results import parse_run
from budeval.events.publisher import DaprPublisher
from budeval.sidecar import EmbeddedSidecar
from budeval.storage.factory import open_archive, open_store
from budeval.workflow import names
from budeval.workflow.activities import Deps
from budeval.workflow.models import WorkflowInput
from budeval.workflow.worker import WORKFLOW_VERSIONS, build_runtime
from budeval.workflow.workflows import evaluation_run_workflow, evaluation_workflow
from tests.support import point_sdk_at_sidecar, wait_until

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_workflow import FIXTURE, InstantBackend, request  # noqa: E402

TIMEOUT = 120
NEW_STEPS: list[str] = []  # (workflow instance, step) of every run of version N+1's new step


def note_step(ctx: wf.WorkflowActivityContext, where: str) -> str:
    """Version N+1's new step (an activity only the upgraded worker has)."""
    NEW_STEPS.append(f"{ctx.workflow_id}:{where}")
    return where


# ---- version N+1, as a new versioned registration --------------------------------------------------------------------
def evaluation_v2(ctx: wf.DaprWorkflowContext, payload: dict[str, Any]) -> Any:
    yield ctx.call_activity("note_step", input="evaluation")
    return (yield from evaluation_workflow(ctx, payload))


def run_v2(ctx: wf.DaprWorkflowContext, payload: dict[str, Any]) -> Any:
    yield ctx.call_activity("note_step", input="run")
    return (yield from evaluation_run_workflow(ctx, payload))


# ---- version N+1, as a patch of version N ----------------------------------------------------------------------------
def evaluation_patched(ctx: wf.DaprWorkflowContext, payload: dict[str, Any]) -> Any:
    if ctx.is_patched("note-step"):
        yield ctx.call_activity("note_step", input="evaluation")
    return (yield from evaluation_workflow(ctx, payload))


def run_patched(ctx: wf.DaprWorkflowContext, payload: dict[str, Any]) -> Any:
    if ctx.is_patched("note-step"):
        yield ctx.call_activity("note_step", input="run")
    return (yield from evaluation_run_workflow(ctx, payload))


UPGRADES = {
    "new-version": {
        names.EVALUATION_WORKFLOW: {**WORKFLOW_VERSIONS[names.EVALUATION_WORKFLOW], "2": evaluation_v2},
        names.RUN_WORKFLOW: {**WORKFLOW_VERSIONS[names.RUN_WORKFLOW], "2": run_v2},
    },
    "patch": {
        names.EVALUATION_WORKFLOW: {names.VERSION_1: evaluation_patched},
        names.RUN_WORKFLOW: {names.VERSION_1: run_patched},
    },
}


class LoseTurns(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """From the ``turn``-th on, the worker's ``CompleteOrchestratorTask`` calls for ``instance`` never reach the
    sidecar (as when the service dies right after computing them): it stops with that turn computed but not
    committed -- between two steps."""

    def __init__(self, instance: str, turn: int) -> None:
        self.instance, self.turn, self.seen = instance, turn, 0
        self.lost = threading.Event()

    def intercept_unary_unary(self, continuation: Any, details: Any, req: Any) -> Any:
        if details.method.endswith("/CompleteOrchestratorTask") and req.instanceId == self.instance:
            self.seen += 1
            if self.seen >= self.turn:
                self.lost.set()
                raise RuntimeError("the service stopped before this turn was committed")
        return continuation(details, req)


@contextmanager
def service(state: Path, work: Path, store: Any, versions: Any, ports: tuple[int, int] = (0, 0),
            lose: LoseTurns | None = None, extra: Callable[[wf.WorkflowRuntime], None] | None = None,
            ) -> Iterator[tuple[EmbeddedSidecar, wf.WorkflowRuntime, wf.DaprWorkflowClient, Deps]]:
    """The service's workflow half: embedded sidecar + worker (``build_runtime`` with ``versions``) + client."""
    sidecar = EmbeddedSidecar(state, grpc_port=ports[0], http_port=ports[1]).start()
    mp = pytest.MonkeyPatch()
    point_sdk_at_sidecar(mp, sidecar.grpc_port, sidecar.http_port)
    settings = Settings(data_dir=work, results_root=work / "results", archive_url=f"file://{work / 'archive'}")
    publisher = DaprPublisher(settings.pubsub_name)
    deps = Deps(settings=settings, backend=InstantBackend(work / "results", FIXTURE, silent_prefix="held-"),
                store=store, archive=open_archive(settings.resolved_archive_url()), publisher=publisher,
                parse=parse_run, suites=load_suites(settings.suites_path))
    runtime, _ = build_runtime(deps, versions, host="127.0.0.1", port=str(sidecar.grpc_port),
                               interceptors=[lose] if lose else None)
    if extra is not None:
        extra(runtime)
    runtime.start()
    client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
    try:
        yield sidecar, runtime, client, deps
    finally:
        client.close()
        runtime.shutdown()
        publisher.close()
        sidecar.stop()
        mp.undo()


def _start(client: wf.DaprWorkflowClient, eval_id: str, poll_s: float) -> None:
    payload = WorkflowInput.model_validate({"request": request(eval_id), "received_at": datetime.now(UTC).isoformat(),
                                            "poll_initial_s": poll_s, "poll_max_s": poll_s})
    client.schedule_new_workflow(names.EVALUATION_WORKFLOW, input=payload.model_dump(mode="json"), instance_id=eval_id)


def _history(sidecar: EmbeddedSidecar, iid: str) -> list[Any]:
    return list(TaskHubGrpcClient(host_address=f"127.0.0.1:{sidecar.grpc_port}").get_instance_history(iid))


def _completed_event(sidecar: EmbeddedSidecar, settings_topic: str, eval_id: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        url = f"http://127.0.0.1:{sidecar.http_port}/v1.0-alpha1/messages"
        for m in httpx.get(url, params={"topic": settings_topic, "after": 0}).json():
            if (m["event"].get("data") or {}).get("eval_id") == eval_id and m["event"]["type"].endswith("completed"):
                return dict(m["event"]["data"])
        return None

    return wait_until(find, what=f"the completed event of {eval_id}")  # type: ignore[no-any-return]


@pytest.mark.parametrize("upgrade", sorted(UPGRADES))
def test_in_flight_evaluations_finish_on_their_version_after_an_upgrade(tmp_path: Path, upgrade: str) -> None:
    assert FIXTURE.exists(), "committed fixture run folder tests/fixtures/opencompass/qa_chat is missing"
    NEW_STEPS.clear()
    state, work = tmp_path / "sidecar.db", tmp_path / "work"
    store = open_store(Settings(data_dir=work).resolved_store_dsn())
    store.migrate()
    waiting, between, fresh = f"held-{upgrade}", f"between-{upgrade}", f"fresh-{upgrade}"
    lose = LoseTurns(between, turn=2)  # turn 1 schedules prepare; turn 2 acts on its result
    try:
        # ---- version N: one evaluation waits on its run (no finish event; the next poll is an hour away), one stops
        # between prepare and its runs
        with service(state, work, store, WORKFLOW_VERSIONS, lose=lose) as (sidecar, _, client, _deps):
            ports = (sidecar.grpc_port, sidecar.http_port)
            _start(client, waiting, poll_s=3600)
            child = names.run_instance_id(waiting, "r0")
            wait_until(lambda: client.get_workflow_state(child) is not None and any(
                e.HasField("timerCreated") for e in _history(sidecar, child)), what="the run to wait", timeout=TIMEOUT)
            _start(client, between, poll_s=0.2)
            assert lose.lost.wait(TIMEOUT), "the second turn of the evaluation never came"
            inst = sidecar.engine.get(between) if sidecar.engine else None
            assert inst is not None and len(inst.inbox) == 1 and inst.inbox[0][1].HasField("taskCompleted")
        # ---- version N+1 on the same state: the sidecar restarts and the worker has the new code
        with service(state, work, store, UPGRADES[upgrade], ports,
                     extra=lambda rt: rt.register_activity(lambda ctx, where: note_step(ctx, where), name="note_step")
                     ) as (sidecar, _, client, deps):
            finished = RunState(eval_id=waiting, run_id="r0", phase="succeeded")
            client.raise_workflow_event(child, names.RUN_FINISHED_EVENT, data=finished.model_dump())
            _start(client, fresh, poll_s=0.2)
            for eval_id in (waiting, between, fresh):
                state_ = client.wait_for_workflow_completion(eval_id, timeout_in_seconds=TIMEOUT)
                assert state_ is not None and state_.runtime_status == wf.WorkflowStatus.COMPLETED, (
                    eval_id, state_ and state_.failure_details)
                done = _completed_event(sidecar, deps.settings.events_topic, eval_id)
                assert done["status"] == "completed" and done["scores"], (eval_id, done)
            # the in-flight instances never took the new step; every instance started after the upgrade did: the new
            # evaluation and its run, and the run the stopped evaluation started after the upgrade (a new instance)
            assert sorted(NEW_STEPS) == sorted([f"{fresh}:evaluation", f"{names.run_instance_id(fresh, 'r0')}:run",
                                                f"{names.run_instance_id(between, 'r0')}:run"])
            recorded = {iid: [e.workflowStarted.version for e in _history(sidecar, iid)
                              if e.HasField("workflowStarted")] for iid in (waiting, between, fresh)}
            child_version = next(e for e in _history(sidecar, child) if e.HasField("workflowStarted")
                                 ).workflowStarted.version.name
        if upgrade == "new-version":
            assert {iid: v[0].name for iid, v in recorded.items()} == {waiting: "1", between: "1", fresh: "2"}
            assert child_version == "1"
        else:
            assert all(v[0].name == "1" for v in recorded.values())
            assert [p for v in recorded[fresh] for p in v.patches] == ["note-step"]
            assert not [p for iid in (waiting, between) for v in recorded[iid] for p in v.patches]
        for eval_id in (waiting, between, fresh):
            record = store.get_evaluation(eval_id)
            assert record is not None and record.status == "completed" and store.results(eval_id)
    finally:
        store.close()
