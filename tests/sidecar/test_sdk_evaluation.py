"""The coordinator's evaluation workflow (build_runtime) end to end through the embedded sidecar.

Real: the dapr SDK runtime and client, the sidecar, chDB (open_store), the folder archive, the result parser, events
published with DaprClient through the sidecar. Only the job is instant: the backend copies a fixture run folder.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
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
from budeval.workflow.worker import build_runtime
from tests.support import point_sdk_at_sidecar

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_workflow import FIXTURE, InstantBackend, request  # noqa: E402

TIMEOUT = 120


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("evalstack")
    sidecar = EmbeddedSidecar(work / "sidecar.db")
    sidecar.start()
    mp = pytest.MonkeyPatch()
    point_sdk_at_sidecar(mp, sidecar.grpc_port, sidecar.http_port)
    settings = Settings(data_dir=work, results_root=work / "results", archive_url=f"file://{work / 'archive'}")
    store = open_store(settings.resolved_store_dsn())
    store.migrate()
    backend = InstantBackend(work / "results", FIXTURE, silent_prefix="poll-")
    publisher = DaprPublisher(settings.pubsub_name)
    deps = Deps(
        settings=settings,
        backend=backend,
        store=store,
        archive=open_archive(settings.resolved_archive_url()),
        publisher=publisher,
        parse=parse_run,
        suites=load_suites(settings.suites_path),
    )
    runtime, _ = build_runtime(deps, host="127.0.0.1", port=str(sidecar.grpc_port))
    runtime.start()
    client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
    watch = backend.watch(
        lambda s: client.raise_workflow_event(
            names.run_instance_id(s.eval_id, s.run_id), names.RUN_FINISHED_EVENT, data=s.model_dump()
        )
    )
    try:
        yield {"sidecar": sidecar, "client": client, "store": store, "settings": settings, "deps": deps, "work": work}
    finally:
        watch.stop()
        runtime.shutdown()
        publisher.close()
        sidecar.stop()
        store.close()
        mp.undo()


def _start(client: wf.DaprWorkflowClient, eval_id: str, poll_s: float = 0.2, **extra: Any) -> None:
    payload = WorkflowInput.model_validate(
        {
            "request": {**request(eval_id), **extra},
            "received_at": datetime.now(UTC).isoformat(),
            "poll_initial_s": poll_s,
            "poll_max_s": max(poll_s, 1.0),
        }
    )
    client.schedule_new_workflow(names.EVALUATION_WORKFLOW, input=payload.model_dump(mode="json"), instance_id=eval_id)


def _events(stack: dict[str, Any], eval_id: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{stack['sidecar'].http_port}/v1.0-alpha1/messages"
    msgs = httpx.get(url, params={"topic": stack["settings"].events_topic, "after": 0}).json()
    return [m["event"] for m in msgs if (m["event"].get("data") or {}).get("eval_id") == eval_id]


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["type"]).rsplit(".", 1)[-1] for e in events]


@pytest.mark.parametrize("eval_id", ["evt-one", "poll-one"])
def test_evaluation_completes_event_driven_and_by_timer_poll(stack: dict[str, Any], eval_id: str) -> None:
    client = stack["client"]
    _start(client, eval_id)
    state = client.wait_for_workflow_completion(eval_id, timeout_in_seconds=TIMEOUT)
    assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED, state and state.failure_details
    deadline = time.monotonic() + 10
    while "completed" not in _kinds(_events(stack, eval_id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    events = _events(stack, eval_id)
    assert _kinds(events) == ["started", "progress", "completed"]
    completed = events[-1]["data"]
    assert completed["status"] == "completed" and completed["scores"]
    record = stack["store"].get_evaluation(eval_id)
    assert record is not None and record.status == "completed"
    assert stack["store"].results(eval_id)
    run = client.get_workflow_state(names.run_instance_id(eval_id, "r0"))
    assert run is not None and run.runtime_status == wf.WorkflowStatus.COMPLETED
    calls = stack["deps"].calls
    assert calls.get(names.SUBMIT, 0) >= 1


def test_polls_carry_a_reference_not_the_spec_and_a_lost_run_is_submitted_again(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every poll's input stays in the run's history: it is the run's ids, not its rendered config. A run the
    backend lost (``unknown``) is submitted again by the workflow, which holds the spec."""
    backend = stack["deps"].backend
    submitted: list[str] = []
    real_submit = backend.submit

    def loses_the_first(spec: Any) -> Any:
        submitted.append(spec.run_id)
        if len(submitted) == 1:  # accepted, then lost: nothing runs, so get() answers "unknown"
            return RunState(eval_id=spec.eval_id, run_id=spec.run_id, phase="running")
        return real_submit(spec)

    monkeypatch.setattr(backend, "submit", loses_the_first)
    _start(stack["client"], "poll-lost")
    state = stack["client"].wait_for_workflow_completion("poll-lost", timeout_in_seconds=TIMEOUT)
    assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED, state and state.failure_details
    assert submitted == ["r0", "r0"]
    record = stack["store"].get_evaluation("poll-lost")
    assert record is not None and record.status == "completed"
    hub = TaskHubGrpcClient(host_address=f"127.0.0.1:{stack['sidecar'].grpc_port}")
    history = hub.get_instance_history(names.run_instance_id("poll-lost", "r0"))
    scheduled = [e.taskScheduled for e in history if e.WhichOneof("eventType") == "taskScheduled"]
    checks = [json.loads(t.input.value) for t in scheduled if t.name == names.CHECK]
    assert len(checks) >= 2  # the poll that found the run lost, and one that found it finished
    assert all(c == {"eval_id": "poll-lost", "run_id": "r0"} for c in checks), checks
    assert [t.name for t in scheduled].count(names.SUBMIT) == 2


def test_a_check_recorded_by_an_older_budeval_with_the_whole_spec_still_runs(stack: dict[str, Any]) -> None:
    """``check_run`` inputs already in histories hold the whole RunSpec: the activity reads the ids from it."""
    from budeval.backends.base import RunSpec
    from budeval.workflow.activities import EvalActivities

    old = RunSpec.model_validate({"eval_id": "evt-one", "run_id": "r0", "config_text": "# rendered\n",
                                  "model": request("evt-one")["model"], "datasets": ["tiny_qa"]})
    answer = EvalActivities(stack["deps"]).check_run(None, old.model_dump(mode="json"))
    assert RunState.model_validate(answer).phase == stack["deps"].backend.get("evt-one", "r0").phase


def test_cancel_terminates_the_evaluation_and_its_run(stack: dict[str, Any]) -> None:
    client = stack["client"]
    backend = stack["deps"].backend
    backend.fixture = Path("/nonexistent")  # submit fails and is retried with backoff: the run stays in flight
    try:
        _start(client, "poll-cancel", poll_s=30)
        child = names.run_instance_id("poll-cancel", "r0")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            st = client.get_workflow_state(child)
            if st is not None and st.runtime_status == wf.WorkflowStatus.RUNNING:
                break
            time.sleep(0.05)
        client.terminate_workflow("poll-cancel", recursive=True)
        parent = client.wait_for_workflow_completion("poll-cancel", timeout_in_seconds=TIMEOUT)
        run = client.wait_for_workflow_completion(child, timeout_in_seconds=TIMEOUT)
        assert parent is not None and parent.runtime_status == wf.WorkflowStatus.TERMINATED
        assert run is not None and run.runtime_status == wf.WorkflowStatus.TERMINATED
    finally:
        backend.fixture = FIXTURE


class _BrokenArchive:
    """An archive that refuses with a terminal error (never retried)."""

    def upload_run(self, source: Path, prefix: str, provenance: dict[str, Any]) -> Any:
        from budeval.errors import ValidationError

        raise ValidationError("archive refused the run", field="archive")


class _StoreRefusingFinalRows:
    """The real store, except that an evaluation's final row is refused with a terminal error."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def record_evaluation(self, record: Any) -> None:
        from budeval.errors import ValidationError

        if record.status != "running":
            raise ValidationError("row refused", field="store")
        self._inner.record_evaluation(record)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _finished_events(stack: dict[str, Any], eval_id: str) -> list[dict[str, Any]]:
    state = stack["client"].wait_for_workflow_completion(eval_id, timeout_in_seconds=TIMEOUT)
    assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED
    deadline = time.monotonic() + 10
    while not {"completed", "failed"} & set(_kinds(_events(stack, eval_id))) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _events(stack, eval_id)


def test_an_archive_that_refuses_leaves_the_scores_completed_and_says_why(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack["deps"], "archive", _BrokenArchive())
    _start(stack["client"], "evt-archive-refused")
    events = _finished_events(stack, "evt-archive-refused")
    assert _kinds(events) == ["started", "progress", "completed"]
    done = events[-1]["data"]
    assert done["archive_url"] is None and "archive failed: archive: archive refused the run" in done["reason"]
    record = stack["store"].get_evaluation("evt-archive-refused")
    assert record is not None and record.status == "completed" and "archive failed" in (record.reason or "")


def test_a_finalize_that_cannot_succeed_ends_failed_with_an_event_not_silently(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack["deps"], "store", _StoreRefusingFinalRows(stack["deps"].store))
    _start(stack["client"], "evt-finalize-broken")
    events = _finished_events(stack, "evt-finalize-broken")
    assert _kinds(events) == ["started", "progress", "failed"]
    assert "finalize failed" in events[-1]["data"]["reason"] and "row refused" in events[-1]["data"]["reason"]
    assert stack["store"].results("evt-finalize-broken")  # the scores were stored before finalize


def test_identical_work_is_reused_with_its_own_score_rows_and_says_so(stack: dict[str, Any]) -> None:
    model = stack["work"] / "reuse-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\x00" * 64)
    source = {"type": "huggingface", "path": str(model)}
    _start(stack["client"], "evt-reuse-a", force=False, model={"name": "first-name", "source": source})
    assert _kinds(_finished_events(stack, "evt-reuse-a")) == ["started", "progress", "completed"]
    _start(stack["client"], "evt-reuse-b", force=False, model={"name": "second-name", "source": source})
    events = _finished_events(stack, "evt-reuse-b")
    assert _kinds(events) == ["completed"]
    done = events[-1]["data"]
    assert done["status"] == "reused" and done["reused"] is True and done["reused_from"] == "evt-reuse-a"
    assert done["scores"] and {(s["eval_id"], s["model"]) for s in done["scores"]} == {("evt-reuse-b", "second-name")}
    store = stack["store"]
    original = {(r.dataset, r.metric, r.score) for r in store.results("evt-reuse-a")}
    assert {(r.dataset, r.metric, r.score) for r in store.results("evt-reuse-b")} == original
    record = store.get_evaluation("evt-reuse-b")
    assert record is not None and record.status == "reused" and record.reused_from == "evt-reuse-a"
    assert stack["deps"].calls.get(names.COPY_RESULTS) == 1
