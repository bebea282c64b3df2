"""The request's ``gate`` block end to end through the embedded sidecar: the evaluation workflow (real dapr SDK
runtime, sidecar, chDB, folder archive, result parser) finishes, then runs the gate against a stored baseline and
publishes ``gate.passed`` / ``gate.inconclusive`` on the events topic. Only the job is instant: the backend copies the
real OpenCompass ``mcq`` output (4 examples with verdicts)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import httpx
import pytest

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

from .support import OPENCOMPASS, record_fixture

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_workflow import InstantBackend  # noqa: E402

TIMEOUT = 120


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("gatestack")
    sidecar = EmbeddedSidecar(work / "sidecar.db")
    sidecar.start()
    mp = pytest.MonkeyPatch()
    point_sdk_at_sidecar(mp, sidecar.grpc_port, sidecar.http_port)
    settings = Settings(data_dir=work, results_root=work / "results", archive_url=f"file://{work / 'archive'}")
    store = open_store(settings.resolved_store_dsn())
    store.migrate()
    record_fixture(store, "mcq-base", OPENCOMPASS / "mcq")  # the baseline: the same real output, extracted
    backend = InstantBackend(work / "results", OPENCOMPASS / "mcq", silent_prefix="poll-")
    publisher = DaprPublisher(settings.pubsub_name)
    deps = Deps(settings=settings, backend=backend, store=store, archive=open_archive(settings.resolved_archive_url()),
                publisher=publisher, parse=parse_run, suites=load_suites(settings.suites_path))
    runtime, _ = build_runtime(deps, host="127.0.0.1", port=str(sidecar.grpc_port))
    runtime.start()
    client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
    watch = backend.watch(
        lambda s: client.raise_workflow_event(
            names.run_instance_id(s.eval_id, s.run_id), names.RUN_FINISHED_EVENT, data=s.model_dump()
        )
    )
    try:
        yield {"sidecar": sidecar, "client": client, "store": store, "settings": settings, "deps": deps}
    finally:
        watch.stop()
        runtime.shutdown()
        publisher.close()
        sidecar.stop()
        store.close()
        mp.undo()


def _run(stack: dict[str, Any], eval_id: str, gate: dict[str, Any] | None) -> list[dict[str, Any]]:
    request: dict[str, Any] = {
        "eval_id": eval_id,
        "model": {"name": "gate-model", "source": {"type": "huggingface", "path": "/models/gate"}},
        "datasets": ["tiny_mcq"],
        "force": True,
    }
    if gate is not None:
        request["gate"] = gate
    payload = WorkflowInput.model_validate(
        {"request": request, "received_at": datetime.now(UTC).isoformat(), "poll_initial_s": 0.2, "poll_max_s": 1.0}
    )
    client = stack["client"]
    client.schedule_new_workflow(names.EVALUATION_WORKFLOW, input=payload.model_dump(mode="json"), instance_id=eval_id)
    state = client.wait_for_workflow_completion(eval_id, timeout_in_seconds=TIMEOUT)
    assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED, state and state.failure_details
    url = f"http://127.0.0.1:{stack['sidecar'].http_port}/v1.0-alpha1/messages"
    want = "gate" if gate is not None else "completed"
    deadline = time.monotonic() + 10
    while True:
        msgs = httpx.get(url, params={"topic": stack["settings"].events_topic, "after": 0}).json()
        events = [m["event"] for m in msgs if (m["event"].get("data") or {}).get("eval_id") == eval_id]
        if any(want in _kind(e) for e in events) or time.monotonic() > deadline:
            return events


def _kind(event: dict[str, Any]) -> str:
    return str(event["type"]).removeprefix("io.budeval.evaluation.")


def test_gate_block_publishes_passed_after_completed(stack: dict[str, Any]) -> None:
    events = _run(stack, "gate-pass", {"baseline": "mcq-base", "tolerance": 100})
    assert [_kind(e) for e in events] == ["started", "progress", "completed", "gate.passed"]
    gate = events[-1]["data"]
    assert events[-1]["id"] == "gate-pass.gate"
    assert gate["status"] == "no-difference" and gate["passed"] is True and gate["baseline"] == "mcq-base"
    [row] = gate["datasets"]
    assert (row["dataset"], row["examples"], row["method"], row["delta"]) == ("tiny_mcq", 4, "mcnemar", 0.0)
    assert stack["deps"].calls.get(names.GATE) == 1


def test_gate_block_says_inconclusive_for_four_examples(stack: dict[str, Any]) -> None:
    events = _run(stack, "gate-small", {"baseline": "mcq-base"})
    assert [_kind(e) for e in events][-2:] == ["completed", "gate.inconclusive"]
    assert events[-1]["data"]["status"] == "inconclusive" and events[-1]["data"]["exit_code"] == 2


def test_gate_block_with_an_unknown_baseline_is_inconclusive_with_the_reason(stack: dict[str, Any]) -> None:
    events = _run(stack, "gate-lost", {"baseline": "latest:tier=none"})
    assert [_kind(e) for e in events][-2:] == ["completed", "gate.inconclusive"]
    data = events[-1]["data"]
    assert data["error"] == "not_found" and "latest:tier=none" in data["message"]


def test_no_gate_block_no_gate_event(stack: dict[str, Any]) -> None:
    events = _run(stack, "gate-none", None)
    assert [_kind(e) for e in events] == ["started", "progress", "completed"]
