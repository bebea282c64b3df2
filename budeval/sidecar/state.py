"""The engine's state: memory as the hot copy, written through to SQLite inside the caller's transaction.

:class:`EngineState` holds every instance, activity, timer and queued work item, rebuilds them from SQLite on start
(:meth:`EngineState._load`) and offers the write-through helpers the other layers use. Every helper that writes runs
inside ``store.tx()`` under :attr:`EngineState.lock` (the caller's job); none of them commits on its own.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections import deque
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb

from budeval.logs import get_logger
from budeval.sidecar.model import Activity, Instance
from budeval.sidecar.store import SidecarStore


class EngineState:
    """All workflow state in memory plus its SQLite rows; the layers above add timers, history and streams."""

    def __init__(self, store: SidecarStore, app_id: str = "budeval") -> None:
        self.store = store
        #: The sidecar's own app (instances started through its main port, rows written before apps were recorded).
        self.app_id = app_id
        #: Every app with an endpoint on this sidecar; a call that targets another app fails at once.
        self.apps: set[str] = {app_id}
        self.lock = store.lock
        self.changed = threading.Condition(self.lock)  # instance status changes (waiters of WaitFor*)
        self.work_cv = threading.Condition(self.lock)  # new work for GetWorkItems streams
        self.timer_cv = threading.Condition(self.lock)
        self.instances: dict[str, Instance] = {}
        self.children: dict[str, set[str]] = {}
        self.activities: dict[tuple[str, int], Activity] = {}
        self.timers: dict[tuple[str, int], tuple[float, str, Any]] = {}
        self.heap: list[tuple[float, str, int, str]] = []
        self.work: deque[tuple[str, Any]] = deque()
        self.streams: dict[int, set[tuple[str, Any]]] = {}
        self._ids = itertools.count(1)
        self.closed = False
        self.log = get_logger(component="sidecar")
        self._load()

    def _load(self) -> None:
        """Rebuild memory from SQLite; every unfinished step is queued again (nothing was in flight before)."""
        db = self.store.db
        with self.lock:
            for row in db.execute(
                "SELECT id, name, execution_id, status, created, updated, completed, start_at, input, output, "
                "custom_status, failure, parent_id, parent_task_id, parent_execution_id, app_id, propagated "
                "FROM instances"
            ):
                inst = Instance(*row)
                inst.app_id = inst.app_id or self.app_id
                self.instances[inst.id] = inst
                if inst.parent_id:
                    self.children.setdefault(inst.parent_id, set()).add(inst.id)
            for inst in self.instances.values():
                inst.offloaded = inst.terminal
            for iid, blob in db.execute("SELECT instance_id, event FROM history ORDER BY instance_id, idx"):
                owner = self.instances.get(iid)
                if owner is not None and not owner.offloaded:
                    owner.history.append(pb.HistoryEvent.FromString(blob))
            for seq, iid, blob in db.execute("SELECT seq, instance_id, event FROM inbox ORDER BY seq"):
                if iid in self.instances:
                    self.instances[iid].inbox.append((seq, pb.HistoryEvent.FromString(blob)))
            for iid, tid, eid, blob, app in db.execute(
                "SELECT instance_id, task_id, execution_id, request, app_id FROM activities"
            ):
                key = (iid, tid)
                self.activities[key] = Activity(iid, tid, eid, pb.ActivityRequest.FromString(blob), self._token("a"),
                                                app_id=app or self.app_id)
                self.work.append(("a", key))
            for iid, tid, eid, fire_at, blob in db.execute(
                "SELECT instance_id, timer_id, execution_id, fire_at, event FROM timers"
            ):
                self.timers[(iid, tid)] = (fire_at, eid, pb.HistoryEvent.FromString(blob))
                heapq.heappush(self.heap, (fire_at, iid, tid, eid))
            for inst in self.instances.values():
                self._enqueue(inst)
        if self.instances:
            self.log.info("sidecar state loaded", instances=len(self.instances), activities=len(self.activities),
                          timers=len(self.timers))

    def _token(self, kind: str) -> str:
        return f"{kind}{next(self._ids)}-{uuid.uuid4().hex[:8]}"

    # ---- persistence helpers (called inside store.tx()) --------------------------------------------------------
    def _save(self, inst: Instance) -> None:
        inst.updated = time.time()
        self.store.db.execute(
            "INSERT OR REPLACE INTO instances (id, name, execution_id, status, created, updated, completed, start_at,"
            " input, output, custom_status, failure, parent_id, parent_task_id, parent_execution_id, app_id,"
            " propagated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (inst.id, inst.name, inst.execution_id, inst.status, inst.created, inst.updated, inst.completed,
             inst.start_at, inst.input, inst.output, inst.custom_status, inst.failure, inst.parent_id,
             inst.parent_task_id, inst.parent_execution_id, inst.app_id, inst.propagated),
        )

    def _append_history(self, inst: Instance, events: list[Any]) -> None:
        base = len(inst.history)
        self.store.db.executemany(
            "INSERT INTO history (instance_id, idx, event) VALUES (?,?,?)",
            [(inst.id, base + i, ev.SerializeToString()) for i, ev in enumerate(events)],
        )
        inst.history.extend(events)

    def _add_inbox(self, inst: Instance, event: Any) -> None:
        cur = self.store.db.execute(
            "INSERT INTO inbox (instance_id, event) VALUES (?,?)", (inst.id, event.SerializeToString())
        )
        inst.inbox.append((int(cur.lastrowid or 0), event))
        self._enqueue(inst)

    def _clear_inbox(self, inst: Instance) -> None:
        self.store.db.execute("DELETE FROM inbox WHERE instance_id=?", (inst.id,))
        inst.inbox.clear()

    def _drop_tasks(self, inst: Instance) -> None:
        """Forget the activities and timers of an execution that ended (late results are ignored)."""
        self.store.db.execute("DELETE FROM activities WHERE instance_id=?", (inst.id,))
        self.store.db.execute("DELETE FROM timers WHERE instance_id=?", (inst.id,))
        for key in [k for k in self.activities if k[0] == inst.id]:
            del self.activities[key]
        for key in [k for k in self.timers if k[0] == inst.id]:
            del self.timers[key]

    def _enqueue(self, inst: Instance) -> None:
        if inst.queued or inst.in_flight or not inst.inbox or inst.terminal:
            return
        if inst.start_at is not None and inst.start_at > time.time():
            return
        inst.queued = True
        self.work.append(("o", inst.id))
        self.work_cv.notify_all()  # streams take only their app's items: wake them all

    def _purge_one(self, inst: Instance) -> None:
        db = self.store.db
        db.execute("DELETE FROM instances WHERE id=?", (inst.id,))
        db.execute("DELETE FROM history WHERE instance_id=?", (inst.id,))
        db.execute("DELETE FROM inbox WHERE instance_id=?", (inst.id,))
        self._drop_tasks(inst)
        self.instances.pop(inst.id, None)
        self.children.pop(inst.id, None)
        if inst.parent_id and inst.parent_id in self.children:
            self.children[inst.parent_id].discard(inst.id)
