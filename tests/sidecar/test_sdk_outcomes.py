"""How evaluations end, through the real SDK runtime and client, the embedded sidecar, chDB and the folder archive
(the stack of test_sdk_evaluation.py): cancel as a workflow event (also racing collect and finalize), an archive
unreachable past the retry window (``archive_pending``, archived later by the housekeeping loop), a row left
``running`` by a finalize that gave up (corrected by the reconciler), and a re-run (attempt 2) superseding the earlier
attempt's rows and folders.

Stand-ins only where the test needs a part to misbehave on cue: a backend whose run never ends (to cancel it), an
archive that is down, a parser or archive that waits on an event (to hold collect or finalize open while the cancel
arrives).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import pytest

from budeval.backends.base import RunState
from budeval.events.publisher import MemoryPublisher
from budeval.service.housekeeping import Housekeeping
from budeval.storage.base import EvaluationRecord
from budeval.workflow import names
from budeval.workflow.models import WorkflowInput
from tests.sidecar.test_sdk_evaluation import (  # noqa: F401 (the module's stack fixture)
    TIMEOUT,
    _events,
    _kinds,
    _StoreRefusingFinalRows,
    request,
    stack,
)
from tests.support import wait_until

FINAL = {"completed", "failed", "cancelled"}


def _start(client: wf.DaprWorkflowClient, eval_id: str, **fields: Any) -> None:
    payload = WorkflowInput.model_validate(
        {"request": request(eval_id), "received_at": datetime.now(UTC).isoformat(), "poll_initial_s": 0.2,
         "poll_max_s": 1.0, **fields}
    )
    client.schedule_new_workflow(names.EVALUATION_WORKFLOW, input=payload.model_dump(mode="json"), instance_id=eval_id)


def _ended(stack: dict[str, Any], eval_id: str) -> tuple[Any, list[dict[str, Any]]]:  # noqa: F811
    state = stack["client"].wait_for_workflow_completion(eval_id, timeout_in_seconds=TIMEOUT)
    assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED, state and state.failure_details
    wait_until(lambda: FINAL & set(_kinds(_events(stack, eval_id))), timeout=10, what="the final event")
    time.sleep(0.5)  # anything published late would show now
    return state, _events(stack, eval_id)


def _terminal(events: list[dict[str, Any]]) -> list[str]:
    return [k for k in _kinds(events) if k in FINAL]


class NeverEndingBackend:
    """Runs stay ``running`` until cancelled (then ``cancelled``); records cancels and submits."""

    name = "never-ending"

    def __init__(self, results_root: Path) -> None:
        self.results_root = results_root
        self.cancelled: list[str] = []
        self.submitted: list[str] = []

    def work_dir(self, eval_id: str, run_id: str) -> Path:
        return self.results_root / eval_id / run_id

    def submit(self, spec: Any) -> RunState:
        self.submitted.append(spec.run_id)
        self.work_dir(spec.eval_id, spec.run_id).mkdir(parents=True, exist_ok=True)
        return self.get(spec.eval_id, spec.run_id)

    def get(self, eval_id: str, run_id: str) -> RunState:
        phase = "cancelled" if eval_id in self.cancelled else "running"
        return RunState(eval_id=eval_id, run_id=run_id, phase=phase)  # type: ignore[arg-type]

    def cancel(self, eval_id: str) -> None:
        self.cancelled.append(eval_id)

    def cleanup(self, eval_id: str, run_id: str) -> None:
        return None


def _tell_children(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    client = stack["client"]
    monkeypatch.setattr(stack["deps"], "raise_event",
                        lambda instance, name, data: client.raise_workflow_event(instance, name, data=data))


def test_a_cancel_event_stops_the_runs_and_the_workflow_records_and_announces_it_once(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    client = stack["client"]
    backend = NeverEndingBackend(stack["settings"].resolved_results_root())
    monkeypatch.setattr(stack["deps"], "backend", backend)
    _tell_children(stack, monkeypatch)
    _start(client, "cx-running", poll_initial_s=30, poll_max_s=60)  # the child waits on a long timer, not a poll
    wait_until(lambda: backend.submitted, timeout=TIMEOUT, what="the run submitted")
    client.raise_workflow_event("cx-running", names.CANCEL_EVENT, data={"reason": "test"})
    state, events = _ended(stack, "cx-running")
    assert _terminal(events) == ["cancelled"], _kinds(events)
    assert '"outcome": "cancelled"' in (state.serialized_output or ""), state.serialized_output
    record = stack["store"].get_evaluation("cx-running")
    assert record is not None and record.status == "cancelled" and record.reason == names.CANCEL_REASON
    child = client.get_workflow_state(names.run_instance_id("cx-running", "r0"))
    assert child is not None and child.runtime_status == wf.WorkflowStatus.COMPLETED  # ended by the event
    assert '"cancelled"' in (child.serialized_output or "")
    assert backend.cancelled.count("cx-running") == 2  # stopped, then swept after its child workflow ended
    assert events[-1]["id"] == "cx-running.cancelled"


class _HeldOpen:
    """Wraps a callable: the first call signals ``entered`` and waits for ``release`` before it runs."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, *args: Any) -> Any:
        self.entered.set()
        assert self.release.wait(TIMEOUT)
        return self.fn(*args)


def test_a_cancel_arriving_while_finalize_runs_comes_too_late_and_only_completed_is_published(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    archive = stack["deps"].archive
    held = _HeldOpen(archive.upload_run)
    monkeypatch.setattr(archive, "upload_run", held)
    _start(stack["client"], "cx-finalize")
    assert held.entered.wait(TIMEOUT)  # finalize is under way (archiving)
    stack["client"].raise_workflow_event("cx-finalize", names.CANCEL_EVENT, data={"reason": "test"})
    time.sleep(0.5)
    held.release.set()
    _, events = _ended(stack, "cx-finalize")
    assert _terminal(events) == ["completed"], _kinds(events)
    record = stack["store"].get_evaluation("cx-finalize")
    assert record is not None and record.status == "completed"


def test_a_cancel_arriving_while_a_run_is_collected_wins_over_finalize_and_keeps_the_stored_rows(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    _tell_children(stack, monkeypatch)
    held = _HeldOpen(stack["deps"].parse)
    monkeypatch.setattr(stack["deps"], "parse", held)
    _start(stack["client"], "cx-collect")
    assert held.entered.wait(TIMEOUT)  # the child workflow's collect_run is parsing
    stack["client"].raise_workflow_event("cx-collect", names.CANCEL_EVENT, data={"reason": "test"})
    wait_until(lambda: "cancelled" in _kinds(_events(stack, "cx-collect")), timeout=TIMEOUT, what="cancelled")
    held.release.set()
    _, events = _ended(stack, "cx-collect")
    assert _terminal(events) == ["cancelled"], _kinds(events)
    record = stack["store"].get_evaluation("cx-collect")
    assert record is not None and record.status == "cancelled"
    keys = Counter((s.run_id, s.dataset, s.metric) for s in stack["store"].results("cx-collect"))
    assert keys and max(keys.values()) == 1  # the run finished collecting: its rows stay, once


class _DownArchive:
    def __init__(self) -> None:
        self.calls = 0

    def upload_run(self, source: Path, prefix: str, provenance: dict[str, Any]) -> Any:
        self.calls += 1
        raise ConnectionError("archive unreachable (test)")


def test_an_archive_down_past_the_window_finishes_with_what_is_stored_and_is_archived_later(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    working = stack["deps"].archive
    down = _DownArchive()
    monkeypatch.setattr(stack["deps"], "archive", down)
    _start(stack["client"], "ap-1", retry_window_s=2)
    _, events = _ended(stack, "ap-1")
    assert _terminal(events) == ["completed"], _kinds(events)
    done = events[-1]["data"]
    assert done["status"] == "completed" and done["archive_pending"] is True and done["archive_url"] is None
    assert down.calls >= 2  # retried within the window first
    record = stack["store"].get_evaluation("ap-1")
    assert record is not None and record.status == "completed" and record.archive_pending
    assert "archive unreachable" in record.provenance["archive_pending_reason"]
    scores = stack["store"].results("ap-1")
    assert scores

    publisher = MemoryPublisher()
    keeper = Housekeeping(stack["settings"], stack["store"], down, stack["client"], publisher)
    assert keeper.run_once()["archived"] == 0  # still down: left for the next round
    assert stack["store"].get_evaluation("ap-1").archive_pending  # type: ignore[union-attr]
    keeper.archive = working
    assert keeper.run_once()["archived"] >= 1
    archived = stack["store"].get_evaluation("ap-1")
    assert archived is not None and not archived.archive_pending and archived.archive_url
    assert "archive_pending_reason" not in archived.provenance and archived.status == "completed"
    assert (Path(archived.archive_url.removeprefix("file://")) / "manifest.json").is_file()
    assert stack["store"].results("ap-1") == scores  # nothing lost, nothing doubled
    assert [e.type.rsplit(".", 1)[-1] for _, e in publisher.events if e.subject == "ap-1"] == ["archived"]
    assert keeper.run_once()["archived"] == 0  # done once


def test_a_row_left_running_by_a_finalize_that_gave_up_is_corrected_by_the_reconciler(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setattr(stack["deps"], "store", _StoreRefusingFinalRows(stack["deps"].store))
    _start(stack["client"], "rc-1")
    _, events = _ended(stack, "rc-1")
    assert _terminal(events) == ["failed"]
    assert stack["store"].get_evaluation("rc-1").status == "running"  # type: ignore[union-attr]
    stack["store"].record_evaluation(EvaluationRecord(eval_id="rc-gone", status="running"))  # no workflow at all
    keeper = Housekeeping(stack["settings"], stack["store"], stack["deps"].archive, stack["client"],
                          MemoryPublisher())
    assert keeper.run_once()["reconciled"] >= 2
    fixed = stack["store"].get_evaluation("rc-1")
    assert fixed is not None and fixed.status == "failed" and "finalize failed" in (fixed.reason or "")
    assert stack["store"].results("rc-1")  # the scores stored before finalize stay
    gone = stack["store"].get_evaluation("rc-gone")
    assert gone is not None and gone.status == "failed" and "workflow is gone" in (gone.reason or "")
    assert keeper.run_once()["reconciled"] == 0


def test_attempt_two_supersedes_the_earlier_attempts_rows_and_folders(stack: dict[str, Any]) -> None:  # noqa: F811
    client, store = stack["client"], stack["store"]
    _start(client, "rr-1")
    _ended(stack, "rr-1")
    first = store.results("rr-1")
    assert first
    root = stack["settings"].resolved_results_root()
    (root / "rr-1" / "only-in-attempt-1").write_text("x")
    client.purge_workflow("rr-1", recursive=True)
    _start(client, "rr-1", attempt=2)
    _, events = _ended(stack, "rr-1")
    assert _terminal(events) == ["completed", "completed"]
    assert [e["id"] for e in events if e["type"].endswith(".completed")] == ["rr-1.completed",
                                                                             "rr-1.completed.attempt2"]
    assert not (root / "rr-1" / "only-in-attempt-1").exists()
    assert (root / ".superseded" / "rr-1.attempt1" / "only-in-attempt-1").is_file()
    second = store.results("rr-1")
    keys = Counter((s.run_id, s.dataset, s.metric) for s in second)
    assert second and max(keys.values()) == 1 and len(second) == len(first)
    record = store.get_evaluation("rr-1")
    assert record is not None and record.status == "completed" and record.provenance["attempt"] == 2
