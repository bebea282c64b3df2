"""The service's housekeeping: a background loop that finishes what an outage left behind.

Every ``housekeeping_interval_s`` it reads the rows that need care (``ResultStore.evaluations_to_tend``):

* **archive pending** -- an evaluation finished while the archive stayed unreachable past the retry window
  (budeval/workflow/outcomes.py): its raw files are uploaded now, then ``archive_pending`` is cleared, the archive's
  URL recorded and an ``archived`` event published. A transient failure leaves it for the next round; a refusal
  (terminal error) clears the flag with the reason in ``provenance.archive_error``.
* **reconcile** -- a row still ``pending``/``running`` whose workflow has ended or is gone (the store was down when
  the workflow's finalize gave up, the sidecar's state was lost, a workflow crashed): the row is corrected from the
  workflow -- its output's outcome and reason (a finalize that gave up says ``failed`` with why), ``failed`` for a
  crashed or vanished workflow, ``cancelled`` for a terminated one -- so no row stays ``running`` for good. A
  crashed workflow (runtime state FAILED) never published its final event: the reconciler publishes ``failed``.

* **retention** -- every ``results_gc_interval_s`` (0: never), evaluation folders whose archive is verified and
  whose grace period (``results_grace_s``) passed are removed from the results volume (budeval/storage/retention.py:
  the rules, and what keeps a folder -- an archive that failed or is pending among them).

Why a reconciler instead of a workflow waiting for the store: the workflow already waits out outages within its
retry window; past it, holding every step of every evaluation open on a dead store would pile up; and the same loop
also repairs rows that older versions (or a lost sidecar state) left ``running``. docs/workflow.md "Outages".
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from budeval.config import Settings
from budeval.errors import TerminalError
from budeval.events.cloudevents import EventKind, make_event
from budeval.events.publisher import EventPublisher
from budeval.logs import get_logger
from budeval.service.periodic import Periodic
from budeval.service.status import ACTIVE_WORKFLOW_STATES, workflow_attempt, workflow_view
from budeval.storage import retention
from budeval.storage.base import Archive, EvaluationRecord
from budeval.workflow import names
from budeval.workflow.provenance import base_provenance

_LOG = get_logger(component="housekeeping")


def _attempt(record: EvaluationRecord) -> int:
    """Which attempt of its eval id a row records (``provenance.attempt``, written from attempt 2 on; else 1)."""
    value = record.provenance.get("attempt", 1)
    return value if isinstance(value, int) and value >= 1 else 1


class Housekeeping(Periodic):
    """One round with :meth:`run_once`; :meth:`start` runs rounds in a daemon thread until :meth:`stop`."""

    def __init__(self, settings: Settings, store: Any, archive: Archive, workflows: Any,
                 publisher: EventPublisher) -> None:
        self.settings = settings
        self.store = store
        self.archive = archive
        self.workflows = workflows
        self.publisher = publisher
        super().__init__()
        self._gc_due = time.monotonic()  # the first round collects

    def start(self) -> Housekeeping:
        self.start_every(self.settings.housekeeping_interval_s, "housekeeping")
        return self

    def run_once(self) -> dict[str, int]:
        """One round: returns how many rows were archived and reconciled, and results folders removed."""
        done = {"archived": 0, "reconciled": 0, "removed": 0}
        for record in self.store.evaluations_to_tend():
            if self._stop.is_set():
                break
            if record.status in ("pending", "running"):
                done["reconciled"] += self.reconcile(record)
            elif record.archive_pending:
                done["archived"] += self.archive_pending(record)
        interval = self.settings.results_gc_interval_s
        if interval > 0 and not self._stop.is_set() and time.monotonic() >= self._gc_due:
            self._gc_due = time.monotonic() + interval
            done["removed"] = self.collect_results()
        return done

    # -- retention -------------------------------------------------------------------------------------------------
    def collect_results(self) -> int:
        """Remove the evaluation folders retention allows (budeval/storage/retention.py); returns how many."""
        verdicts = retention.collect(self.settings.resolved_results_root(), self.store, self.archive,
                                     self.settings.results_grace_s, dry_run=False)
        for v in verdicts:
            if v.reason.startswith(("archive not verified", "archived at")):  # past its grace, yet stays: say why
                _LOG.warning("results folder kept", eval_id=v.eval_id, reason=v.reason[:300])
        return sum(1 for v in verdicts if v.removed)

    # -- archive pending -------------------------------------------------------------------------------------------
    def archive_pending(self, seen: EvaluationRecord) -> int:
        eval_id = seen.eval_id
        record = self.store.get_evaluation(eval_id)  # a forced re-run may have begun since the round read the rows
        if record is None or not record.archive_pending or record.status in ("pending", "running"):
            return 0
        source = self.settings.resolved_results_root() / eval_id
        log = get_logger(eval_id=eval_id, component="housekeeping")
        provenance = {k: v for k, v in record.provenance.items() if k != "archive_pending_reason"}
        update: dict[str, Any] = {"archive_pending": False, "provenance": provenance}
        if not source.is_dir():
            provenance["archive_error"] = f"no results folder for {eval_id}"
        else:
            manifest = {"config_hashes": record.provenance.get("config_hashes", {}),
                        "params_hash": record.params_hash}
            try:
                receipt = self.archive.upload_run(source, eval_id, base_provenance(self.settings, manifest))
            except TerminalError as exc:
                provenance["archive_error"] = str(exc)[:500]
            except Exception as exc:  # still unreachable: the next round tries again
                log.info("archive still pending", error=type(exc).__name__)
                return 0
            else:
                update["archive_url"] = receipt.url
        self.store.record_evaluation(record.model_copy(update=update))
        data = {"status": record.status, "archive_url": update.get("archive_url"),
                "archive_error": provenance.get("archive_error")}
        self._publish("archived", names.event_id(eval_id, "archived", _attempt(record)), eval_id, data)
        log.info("pending archive done", archive_url=update.get("archive_url"))
        return 1

    # -- reconcile -------------------------------------------------------------------------------------------------
    def reconcile(self, record: EvaluationRecord) -> int:
        eval_id = record.eval_id
        try:
            state = self.workflows.get_workflow_state(eval_id, fetch_payloads=True)
        except Exception as exc:
            _LOG.info("workflow state unavailable", eval_id=eval_id, error=type(exc).__name__)
            return 0
        workflow = workflow_view(state)
        if workflow is not None and workflow["status"] in ACTIVE_WORKFLOW_STATES:
            return 0
        status, reason, announce = self._verdict(workflow)
        attempt = workflow_attempt(state) if state is not None else _attempt(record)
        current = self.store.get_evaluation(eval_id)  # the workflow may have written its row meanwhile
        if current is None or current.status not in ("pending", "running"):
            return 0
        if _attempt(current) > attempt:  # a forced re-run began since the workflow was read: not this verdict's row
            return 0
        fixed = current.model_copy(update={"status": status, "reason": reason,
                                           "finished_at": current.finished_at or datetime.now(UTC)})
        self.store.record_evaluation(fixed)
        get_logger(eval_id=eval_id, component="housekeeping").warning("row reconciled", status=status,
                                                                       reason=reason[:300])
        if announce:
            self._publish("failed", names.event_id(eval_id, "failed", attempt), eval_id,
                          {"status": status, "reason": reason})
        return 1

    @staticmethod
    def _verdict(workflow: dict[str, Any] | None) -> tuple[Any, str, bool]:
        """(status, reason, publish ``failed``?) of an evaluation whose workflow has ended or is gone."""
        if workflow is None:
            return "failed", "its workflow is gone (the sidecar's state was lost or purged)", False
        if workflow["status"] == "COMPLETED":
            output = workflow.get("output") or {}
            outcome = str(output.get("outcome") or "failed")
            if outcome not in ("completed", "partial", "failed", "reused", "rejected", "cancelled"):
                outcome = "failed"
            return outcome, str(output.get("reason") or "recorded by the reconciler"), False
        if workflow["status"] == "TERMINATED":
            return "cancelled", "its workflow was terminated", False
        failure = workflow.get("failure") or {}
        return "failed", f"its workflow failed: {failure.get('message') or workflow['status']}", True

    def _publish(self, kind: EventKind, event_id: str, eval_id: str, data: dict[str, Any]) -> None:
        try:
            self.publisher.publish(self.settings.events_topic, make_event(kind, event_id, eval_id, data))
        except Exception as exc:
            _LOG.warning("event not published", eval_id=eval_id, kind=kind, error=type(exc).__name__)
