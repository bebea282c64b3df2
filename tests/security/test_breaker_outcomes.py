"""Breaker 13 (outcomes): attacks on the newest work of issues 13 and 14 -- cancel as a workflow event, the
housekeeping loop (archive pending, reconciler) and ``force`` re-runs. Each test failed on the code as merged.

Real parts: the chDB store, the folder archive, the request catalog and the settings. Stand-ins only for the
workflow engine's answers (which instance exists, in which state: the logic under test is the service's decision).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from budeval.config import Settings
from budeval.engine.catalog import load_suites
from budeval.events.publisher import MemoryPublisher
from budeval.service.admission import Admission
from budeval.service.housekeeping import Housekeeping
from budeval.service.metrics import Metrics
from budeval.storage.archive_folder import FolderArchive
from budeval.storage.base import EvaluationRecord
from budeval.storage.clickhouse import ClickHouseStore
from tests.service.conftest import Harness, _harness
from tests.service.support import FakeState, StandInWorkflows, Status


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"BUDEVAL_DATA_DIR": str(tmp_path / "data")})


def _body(eval_id: str, force: bool = False) -> bytes:
    return json.dumps({"eval_id": eval_id, "force": force,
                       "model": {"name": "m", "source": {"type": "huggingface", "path": "org/model"}},
                       "datasets": ["tiny_qa"]}).encode()


def _row(eval_id: str, status: str, **fields: Any) -> EvaluationRecord:
    now = datetime.now(UTC)
    return EvaluationRecord(eval_id=eval_id, status=status, created_at=now, finished_at=now,  # type: ignore[arg-type]
                            **fields)


# -- force -----------------------------------------------------------------------------------------------------------
def test_force_never_re_runs_a_completed_evaluation_whose_workflow_is_gone(
    tmp_path: Path, store: ClickHouseStore
) -> None:
    """docs/workflow.md "Re-running": only a failed, cancelled or rejected evaluation may be re-run with ``force``;
    a completed one is a ``duplicate``, forced or not. When the workflow is gone (purged, or the sidecar's state
    lost) admission read the row only for the attempt number and started attempt 2 whatever the row said -- whose
    prepare (``supersede_attempt``) deletes the completed evaluation's scores, statuses and predictions."""
    settings = _settings(tmp_path)
    store.record_evaluation(_row("done-1", "completed"))
    workflows = StandInWorkflows()  # no instance: the workflow is gone
    admission = Admission(settings, workflows, MemoryPublisher(), load_suites(settings.suites_path), Metrics(),
                          store=store)
    decision = admission.handle(_body("done-1", force=True), "http")
    assert decision.kind == "duplicate", decision
    assert workflows.scheduled == []
    assert "completed" in decision.detail


def test_force_re_runs_a_failed_evaluation_whose_workflow_is_gone_as_the_next_attempt(
    tmp_path: Path, store: ClickHouseStore
) -> None:
    """The other side of the rule above (held before the fix, kept by it)."""
    settings = _settings(tmp_path)
    store.record_evaluation(_row("failed-1", "failed", provenance={"attempt": 2}))
    workflows = StandInWorkflows()
    admission = Admission(settings, workflows, MemoryPublisher(), load_suites(settings.suites_path), Metrics(),
                          store=store)
    decision = admission.handle(_body("failed-1", force=True), "http")
    assert decision.kind == "accepted" and decision.attempt == 3, decision


def test_a_plain_resubmit_never_re_runs_an_ended_evaluation_whose_workflow_is_gone(
    tmp_path: Path, store: ClickHouseStore
) -> None:
    """Without ``force`` an id whose workflow is gone answers by its row: completed/failed/cancelled/left running ->
    ``duplicate`` (before: attempt 1 started again over the stored rows, reusing the first attempt's event ids); a
    rejected id's corrected resubmission starts as the next attempt; an unknown id starts as attempt 1."""
    settings = _settings(tmp_path)
    for eval_id, status in (("done-2", "completed"), ("failed-2", "failed"), ("cancelled-2", "cancelled"),
                            ("left-2", "running"), ("rejected-2", "rejected")):
        store.record_evaluation(_row(eval_id, status))
    workflows = StandInWorkflows()
    admission = Admission(settings, workflows, MemoryPublisher(), load_suites(settings.suites_path), Metrics(),
                          store=store)
    for eval_id in ("done-2", "failed-2", "cancelled-2", "left-2"):
        decision = admission.handle(_body(eval_id), "http")
        assert decision.kind == "duplicate", (eval_id, decision)
    assert workflows.scheduled == []
    assert "force" in admission.handle(_body("failed-2"), "http").detail
    rejected = admission.handle(_body("rejected-2"), "http")
    assert rejected.kind == "accepted" and rejected.attempt == 2, rejected
    fresh = admission.handle(_body("new-2"), "http")
    assert fresh.kind == "accepted" and fresh.attempt == 1, fresh


# -- housekeeping ----------------------------------------------------------------------------------------------------
def test_archive_pending_never_overwrites_a_row_that_changed_since_it_was_read(
    tmp_path: Path, store: ClickHouseStore
) -> None:
    """The housekeeping round reads the rows to tend, then archives each. A ``failed`` evaluation left
    ``archive_pending`` may be re-run with ``force`` meanwhile (attempt 2 writes its row ``running``). The archive
    step then wrote its stale copy of attempt 1's row back: the running evaluation's row said ``failed`` (and the
    reconciler never looks at it again; attempt 2's own final row comes much later, or never if it is cancelled
    after a store outage). Right: re-read the row and tend it only if it still waits for its archive."""
    settings = _settings(tmp_path)
    (settings.resolved_results_root() / "ap-1" / "r0").mkdir(parents=True)
    (settings.resolved_results_root() / "ap-1" / "r0" / "out.txt").write_text("x")
    store.record_evaluation(_row("ap-1", "failed", archive_pending=True,
                                 provenance={"archive_pending_reason": "down"}))
    keeper = Housekeeping(settings, store, FolderArchive(tmp_path / "archive"), StandInWorkflows(),
                          MemoryPublisher())
    [stale] = store.evaluations_to_tend()
    store.record_evaluation(_row("ap-1", "running", provenance={"attempt": 2}))  # the forced re-run began
    keeper.archive_pending(stale)
    current = store.get_evaluation("ap-1")
    assert current is not None and current.status == "running" and current.provenance.get("attempt") == 2


def test_housekeeping_events_of_a_re_run_carry_its_attempt(tmp_path: Path, store: ClickHouseStore) -> None:
    """names.event_id: "a re-run under the same eval id does not [publish the same id] (consumers that dedupe by id
    would drop its events)". The housekeeping loop made its ids by hand: ``{eval}.failed`` for a crashed attempt 2
    is the id of attempt 1's own ``failed`` event (the one that allowed the ``force``), and ``{eval}.archived`` is
    the same for every attempt -- a consumer deduping by id dropped attempt 2's end."""
    settings = _settings(tmp_path)
    workflows = StandInWorkflows()
    crashed = FakeState("wf-2", Status.FAILED, serialized_input=json.dumps({"attempt": 2}))
    workflows.instances["wf-2"] = crashed
    store.record_evaluation(_row("wf-2", "running", provenance={"attempt": 2}))
    root = settings.resolved_results_root() / "ap-2" / "r0"
    root.mkdir(parents=True)
    (root / "out.txt").write_text("x")
    store.record_evaluation(_row("ap-2", "completed", archive_pending=True, provenance={"attempt": 2}))
    publisher = MemoryPublisher()
    keeper = Housekeeping(settings, store, FolderArchive(tmp_path / "archive"), workflows, publisher)
    assert keeper.run_once() == {"archived": 1, "reconciled": 1, "removed": 0}
    ids = sorted(event.id for _, event in publisher.events)
    assert ids == ["ap-2.archived.attempt2", "wf-2.failed.attempt2"], ids


# -- status and cancel of a forced re-run ------------------------------------------------------------------------------
@pytest.fixture
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """The app (real HTTP) with stand-in workflow engine and store: tests/service/conftest.py."""
    yield from _harness(tmp_path_factory, app_token=None)


def test_a_forced_re_run_of_a_cancelled_id_can_be_cancelled_before_its_row_is_written(harness: Harness) -> None:
    """``submit --force`` of a cancelled id, then ``budeval cancel`` at once: admission purged attempt 1 and started
    attempt 2, whose prepare has not written its ``running`` row yet (validate, supersede and render come first), so
    the row still is attempt 1's ``cancelled``. ``evaluation_status`` let that final row win over the running
    workflow: ``DELETE`` answered 200 "already cancelled" and raised nothing -- attempt 2 ran on to ``completed``
    although its cancel was acknowledged -- and ``GET`` said ``cancelled`` for a running evaluation (``budeval
    cancel`` of a forced re-run of a *failed* id printed ``failed`` at once, exit 1). Right: a row of an earlier
    attempt never outranks the running workflow of a later one."""
    harness.store.record_evaluation(EvaluationRecord(eval_id="rr-c", status="cancelled", reason="cancelled"))
    harness.workflows.instances["rr-c"] = FakeState("rr-c", Status.RUNNING,
                                                    serialized_input=json.dumps({"attempt": 2}))
    shown = httpx.get(f"{harness.url}/evals/rr-c", headers=harness.auth, timeout=10).json()
    assert shown["status"] == "running", shown
    answer = httpx.delete(f"{harness.url}/evals/rr-c", headers=harness.auth, timeout=10)
    assert answer.status_code == 202 and answer.json()["status"] == "cancel_requested", answer.text
    assert [(i, name) for i, name, _ in harness.workflows.raised] == [("rr-c", "cancel_requested")]
    # Once attempt 2 wrote its own final row, the row wins again (its provenance names the attempt).
    harness.store.record_evaluation(EvaluationRecord(eval_id="rr-c", status="cancelled", provenance={"attempt": 2}))
    again = httpx.delete(f"{harness.url}/evals/rr-c", headers=harness.auth, timeout=10)
    assert again.status_code == 200 and again.json()["already"] is True


def test_the_running_row_of_a_re_run_names_its_attempt(tmp_path: Path, store: ClickHouseStore) -> None:
    """prepare of attempt 2 wrote its ``running`` row without ``provenance.attempt`` (only the final row had it).
    When that attempt's workflow is then lost, the reconciler finishes the row as it is, and admission reads the
    attempt from the row: the next ``force`` ran as attempt 2 *again*, its event ids (``e.completed.attempt2``)
    those of the earlier attempt 2 (dropped by consumers that dedupe), and ``GET`` let the old row outrank it."""
    from budeval.workflow.activities import EvalActivities
    from budeval.workflow.deps import Deps
    from budeval.workflow.models import PrepareInput
    from tests.service.support import StandInBackend

    settings = _settings(tmp_path)
    deps = Deps(settings=settings, backend=StandInBackend(), store=store, archive=FolderArchive(tmp_path / "a"),
                publisher=MemoryPublisher(), parse=lambda _: None,  # type: ignore[arg-type,return-value]
                suites=load_suites(settings.suites_path))
    request = json.loads(_body("pr-2", force=True))
    EvalActivities(deps).prepare_evaluation(
        None, PrepareInput(request=request, started_at=datetime.now(UTC).isoformat(), attempt=2).model_dump())
    row = store.get_evaluation("pr-2")
    assert row is not None and row.status == "running" and row.provenance.get("attempt") == 2, row


def test_the_reconciler_never_finishes_a_later_attempts_row_with_an_earlier_attempts_verdict(
    tmp_path: Path, store: ClickHouseStore
) -> None:
    """The reconciler reads the workflow (attempt 1: finished ``failed``, its finalize gave up with the store
    down), then re-reads the row to correct it. In between, a ``force`` re-run purged attempt 1 and attempt 2's
    prepare wrote its ``running`` row. The re-read saw ``running`` and wrote attempt 1's verdict over attempt 2's
    row: the running evaluation said ``failed``. Right: correct the row only if it is of the attempt the verdict
    is about."""
    settings = _settings(tmp_path)
    workflows = StandInWorkflows()  # what the reconciler read: attempt 1, ended
    workflows.instances["rc-2"] = FakeState("rc-2", Status.COMPLETED, json.dumps({"outcome": "failed",
                                                                                   "reason": "finalize failed"}),
                                            serialized_input=json.dumps({"attempt": 1}))
    store.record_evaluation(_row("rc-2", "running", provenance={"attempt": 2}))  # attempt 2 began meanwhile
    publisher = MemoryPublisher()
    keeper = Housekeeping(settings, store, FolderArchive(tmp_path / "archive"), workflows, publisher)
    assert keeper.reconcile(_row("rc-2", "running")) == 0
    current = store.get_evaluation("rc-2")
    assert current is not None and current.status == "running", current
    assert publisher.events == []
