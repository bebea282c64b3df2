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
from budeval.storage.factory import open_store
from tests.service.support import FakeState, StandInWorkflows, Status


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    opened = open_store(f"chdb://{tmp_path / 'ch'}")
    opened.migrate()
    try:
        yield opened
    finally:
        opened.close()


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"BUDEVAL_DATA_DIR": str(tmp_path / "data")})


def _body(eval_id: str, force: bool) -> bytes:
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
    admission = Admission(settings, workflows, MemoryPublisher(), load_suites(settings.suites_dir), Metrics(),
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
    admission = Admission(settings, workflows, MemoryPublisher(), load_suites(settings.suites_dir), Metrics(),
                          store=store)
    decision = admission.handle(_body("failed-1", force=True), "http")
    assert decision.kind == "accepted" and decision.attempt == 3, decision


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
    assert keeper.run_once() == {"archived": 1, "reconciled": 1}
    ids = sorted(event.id for _, event in publisher.events)
    assert ids == ["ap-2.archived.attempt2", "wf-2.failed.attempt2"], ids
