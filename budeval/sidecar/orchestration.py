"""The orchestration engine behind the embedded sidecar: instances, histories, inboxes, activities, durable timers.

It implements the backend half of the Durable Task protocol that the unmodified Dapr workflow SDK speaks: the SDK
replays ``pastEvents``, applies ``newEvents`` and answers with actions; the engine turns actions into history events,
activity work items, timers and child instances. State lives in memory and every change is written through to SQLite
in the same transaction before the RPC that caused it is answered, so a killed process resumes exactly where the
last acknowledged step left it. One lock guards everything: the work is tiny compared to the RPC and the SDK.

The engine is built in layers, one concern each, every one a subclass of the one below:
:mod:`~budeval.sidecar.state` (memory + SQLite write-through, reload) < :mod:`~budeval.sidecar.timers` (durable
timers) < :mod:`~budeval.sidecar.history` (actions and commands -> history/inbox events) <
:mod:`~budeval.sidecar.streams` (work items out, results in) < :class:`Engine` here (lifecycle, client operations,
queries). Records and constants are in :mod:`~budeval.sidecar.model` and re-exported here.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb

from budeval.sidecar.model import (
    CANCELED,
    COMPLETED,
    CONTINUED_AS_NEW,
    FAILED,
    NEVER_SECONDS,
    PENDING,
    RUNNING,
    STALLED,
    START_TIMER_ID,
    SUSPENDED,
    TERMINAL,
    TERMINATED,
    Activity,
    EngineError,
    Instance,
    _event,
    _seconds,
    _status_name,
    _sv,
    _ts,
)
from budeval.sidecar.store import SidecarStore
from budeval.sidecar.streams import WorkStreams
from budeval.sidecar.versioning import recorded_version

__all__ = [
    "CANCELED", "COMPLETED", "CONTINUED_AS_NEW", "FAILED", "NEVER_SECONDS", "PENDING", "RUNNING", "STALLED",
    "START_TIMER_ID",
    "SUSPENDED", "TERMINAL", "TERMINATED", "Activity", "Engine", "EngineError", "Instance", "_event", "_seconds",
    "_status_name", "_sv", "_ts",
]


class Engine(WorkStreams):
    """All workflow state; the gRPC servicer is a thin translation layer over these methods."""

    def __init__(self, store: SidecarStore, app_id: str = "budeval") -> None:
        super().__init__(store, app_id)
        self._timer_thread = threading.Thread(target=self._timer_loop, name="sidecar-timers", daemon=True)

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._timer_thread.start()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.work_cv.notify_all()
            self.timer_cv.notify_all()
            self.changed.notify_all()
        if self._timer_thread.is_alive():
            self._timer_thread.join(timeout=5)

    # ---- client operations ---------------------------------------------------------------------------------------
    def start_instance(self, instance_id: str, name: str, input_json: str | None, start_at: float | None,
                       app_id: str | None = None) -> str:
        """A new instance run by the workers of ``app_id`` (default: the sidecar's own app); an existing id is refused
        unless that instance has ended (then it is replaced), an app this sidecar does not serve with NOT_FOUND."""
        if not instance_id:
            instance_id = uuid.uuid4().hex
        app = app_id or self.app_id
        with self.lock:
            if app not in self.apps:
                raise EngineError("NOT_FOUND", f"app id '{app}' is not served by this sidecar "
                                               f"(it serves: {', '.join(sorted(self.apps))})")
            old = self.instances.get(instance_id)
            if old is not None and not old.terminal:
                raise EngineError("ALREADY_EXISTS", f"an active workflow with ID '{instance_id}' already exists")
            with self.store.tx():
                self._create(instance_id, name, input_json, None, start_at, app_id=app)
            self.changed.notify_all()
        return instance_id

    def raise_event(self, instance_id: str, name: str, input_json: str | None) -> None:
        with self.lock, self.store.tx():
            self._raise(instance_id, name, input_json)

    def terminate(self, instance_id: str, output: str | None, recursive: bool) -> None:
        with self.lock:
            if instance_id not in self.instances:
                raise EngineError("NOT_FOUND", f"no such instance exists: '{instance_id}'")
            with self.store.tx():
                self._terminate(instance_id, output, recursive)
            self.changed.notify_all()

    def suspend(self, instance_id: str, reason: str | None) -> None:
        self._set_suspended(instance_id, reason, True)

    def resume(self, instance_id: str, reason: str | None) -> None:
        self._set_suspended(instance_id, reason, False)

    def _set_suspended(self, instance_id: str, reason: str | None, suspend: bool) -> None:
        with self.lock:
            inst = self.instances.get(instance_id)
            if inst is None:
                raise EngineError("NOT_FOUND", f"no such instance exists: '{instance_id}'")
            if inst.terminal or inst.suspended() == suspend:  # (a stalled instance may be suspended too)
                return
            with self.store.tx():
                if suspend:
                    inst.status = SUSPENDED
                    self._add_inbox(inst, _event(executionSuspended=pb.ExecutionSuspendedEvent(input=_sv(reason))))
                else:
                    inst.status = RUNNING
                    self._add_inbox(inst, _event(executionResumed=pb.ExecutionResumedEvent(input=_sv(reason))))
                self._save(inst)
            self.changed.notify_all()

    def purge(self, instance_id: str | None, recursive: bool, force: bool,
              created_from: float | None = None, created_to: float | None = None,
              statuses: frozenset[int] = frozenset()) -> int:
        with self.lock, self.store.tx():
            if instance_id is not None:
                inst = self.instances.get(instance_id)
                if inst is None:
                    return 0
                if not inst.terminal and not force:
                    raise EngineError("FAILED_PRECONDITION",
                                      f"workflow '{instance_id}' is still running; terminate it before purging")
                targets = [inst]
            else:
                targets = [i for i in self.instances.values() if i.terminal
                           and (created_from is None or i.created >= created_from)
                           and (created_to is None or i.created < created_to)
                           and (not statuses or i.status in statuses)]
            return sum(self._purge_tree(inst, recursive) for inst in targets)

    def _purge_tree(self, inst: Instance, recursive: bool) -> int:
        count = 0
        if recursive:
            for child in list(self.children.get(inst.id, ())):
                if child in self.instances:
                    count += self._purge_tree(self.instances[child], True)
        if inst.id in self.instances:
            self._purge_one(inst)
            count += 1
        return count

    # ---- queries -------------------------------------------------------------------------------------------------
    def state(self, instance_id: str, payloads: bool) -> Any:
        with self.lock:
            inst = self.instances.get(instance_id)
            if inst is None:
                return pb.GetInstanceResponse(exists=False)
            ws = pb.WorkflowState(
                instanceId=inst.id, name=inst.name, workflowStatus=inst.status, createdTimestamp=_ts(inst.created),
                lastUpdatedTimestamp=_ts(inst.updated), executionId=_sv(inst.execution_id),
                parentInstanceId=_sv(inst.parent_id),
            )
            if inst.completed is not None:
                ws.completedTimestamp.CopyFrom(_ts(inst.completed))
            if version := self._version(inst):
                ws.version.CopyFrom(_sv(version))
            if inst.failure is not None:
                ws.failureDetails.CopyFrom(pb.TaskFailureDetails.FromString(inst.failure))
            if payloads:
                for attr, value in (("input", inst.input), ("output", inst.output),
                                    ("customStatus", inst.custom_status)):
                    if value is not None:
                        getattr(ws, attr).CopyFrom(_sv(value))
            return pb.GetInstanceResponse(exists=True, workflowState=ws)

    def _version(self, inst: Instance) -> str:
        """The version its first turn recorded; an ended instance's history is read from SQLite (its first turn's
        ``WorkflowStarted`` leads it)."""
        if not inst.offloaded:
            return recorded_version(inst.history)
        rows = self.store.db.execute("SELECT event FROM history WHERE instance_id=? ORDER BY idx LIMIT 2",
                                     (inst.id,)).fetchall()
        return recorded_version(pb.HistoryEvent.FromString(blob) for (blob,) in rows)

    def wait(self, instance_id: str, payloads: bool, until: Callable[[Instance], bool], timeout: float | None,
             is_active: Callable[[], bool]) -> Any:
        """Block until ``until(instance)`` (or the instance is unknown); ``None`` when the deadline passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while True:
                inst = self.instances.get(instance_id)
                if inst is None or until(inst):
                    return self.state(instance_id, payloads)
                left = 1.0 if deadline is None else deadline - time.monotonic()
                if left <= 0 or not is_active() or self.closed:
                    return None
                self.changed.wait(min(left, 1.0))

    def get(self, instance_id: str) -> Instance | None:
        """The live instance object (tests and diagnostics; read it under :attr:`lock` for a consistent view)."""
        with self.lock:
            return self.instances.get(instance_id)

    def history(self, instance_id: str) -> list[Any]:
        with self.lock:
            inst = self.instances.get(instance_id)
            if inst is None:
                raise EngineError("NOT_FOUND", f"no such instance exists: '{instance_id}'")
            if inst.offloaded:
                rows = self.store.db.execute(
                    "SELECT event FROM history WHERE instance_id=? ORDER BY idx", (instance_id,)).fetchall()
                return [pb.HistoryEvent.FromString(blob) for (blob,) in rows]
            return list(inst.history)

    def list_ids(self, after: str | None, size: int) -> tuple[list[str], str | None]:
        with self.lock:
            ids = sorted(i for i in self.instances if after is None or i > after)
        page = ids[:size] if size > 0 else ids
        return page, (page[-1] if size > 0 and len(ids) > size else None)
