"""The durable orchestration engine behind the sidecar's workflow API: state in memory, every change written to SQLite.

Model (as in Dapr's durabletask backend): an instance has a committed ``history`` and an ``inbox`` of events not yet
shown to the orchestrator. Timers are inbox rows whose ``due`` lies in the future. A work item carries the history as
``pastEvents`` and ``[WorkflowStarted] + inbox`` as ``newEvents``; its completion appends those to the history and
applies the returned actions in one SQLite transaction. One orchestration work item per instance is in flight at a
time; work items handed to a stream that drops are handed out again.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from budeval.sidecar.protos import (
    COMPLETED,
    CONTINUED_AS_NEW,
    FAILED,
    NEVER_SECONDS,
    PENDING,
    RUNNING,
    SUSPENDED,
    TERMINAL,
    TERMINATED,
    pb,
    string_value,
    timestamp,
)

log = logging.getLogger("budeval.sidecar")


class SidecarError(Exception):
    """A request the engine refuses; ``code`` names the gRPC status (NOT_FOUND, ALREADY_EXISTS, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Instance:
    id: str
    name: str
    execution_id: str
    status: int
    input: str | None
    created: float
    updated: float
    output: str | None = None
    custom_status: str | None = None
    failure: bytes | None = None
    completed: float | None = None
    parent: bytes | None = None  # serialized ParentInstanceInfo of a child workflow
    history: list[Any] = field(default_factory=list)
    inbox: list[tuple[int, Any]] = field(default_factory=list)  # (row id, HistoryEvent), ready to process
    in_flight: str | None = None  # completion token of the work item handed out
    in_flight_events: list[Any] = field(default_factory=list)
    in_flight_rows: list[int] = field(default_factory=list)
    queued: bool = False
    #: A finished instance's history is dropped from memory (a long-running service keeps every instance);
    #: ``Engine.history`` reads it back from SQLite when asked.
    evicted: bool = False

    def meta(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "execution_id": self.execution_id,
                "status": self.status,
                "input": self.input,
                "created": self.created,
                "updated": self.updated,
                "output": self.output,
                "custom_status": self.custom_status,
                "failure": base64.b64encode(self.failure).decode() if self.failure else None,
                "completed": self.completed,
                "parent": base64.b64encode(self.parent).decode() if self.parent else None,
            }
        )

    @classmethod
    def from_meta(cls, instance_id: str, text: str) -> Instance:
        m = json.loads(text)
        return cls(
            id=instance_id,
            name=m["name"],
            execution_id=m["execution_id"],
            status=m["status"],
            input=m["input"],
            created=m["created"],
            updated=m["updated"],
            output=m["output"],
            custom_status=m["custom_status"],
            failure=base64.b64decode(m["failure"]) if m["failure"] else None,
            completed=m["completed"],
            parent=base64.b64decode(m["parent"]) if m["parent"] else None,
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def parent_info(self) -> Any | None:
        if not self.parent:
            return None
        info = pb.ParentInstanceInfo()
        info.ParseFromString(self.parent)
        return info

    def children(self, history: list[Any]) -> list[str]:
        return [
            e.childWorkflowInstanceCreated.instanceId for e in history if e.HasField("childWorkflowInstanceCreated")
        ]


@dataclass
class Stream:
    """One ``GetWorkItems`` stream of a worker; owns the work items handed to it until they complete."""

    id: int
    owned: set[str] = field(default_factory=set)
    closed: bool = False


@dataclass
class Activity:
    token: str
    instance_id: str
    request: Any  # ActivityRequest
    queued: bool = False


def _event(**kind: Any) -> Any:
    event_id = kind.pop("event_id", -1)
    ev = pb.HistoryEvent(eventId=event_id, **kind)
    ev.timestamp.GetCurrentTime()
    return ev


class Engine:
    """Thread-safe: every public method takes the one lock; SQLite commits happen once per public call."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._db = conn
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # instance states changed (waiters) or work is ready
        self._ready: deque[tuple[str, str]] = deque()  # ("orch", instance id) | ("act", token)
        self.instances: dict[str, Instance] = {}
        self._activities: dict[str, Activity] = {}
        self._owner: dict[str, Stream] = {}
        self._timers: list[tuple[float, int, str]] = []  # heap of (due, inbox row id, instance id)
        self._pending_timers: dict[int, Any] = {}  # row id -> event, for timers not yet due
        self._stream_ids = itertools.count(1)
        self._stopping = False
        self._timer_cond = threading.Condition(self._lock)
        with self._lock:  # queueing notifies the conditions, which needs the lock held
            self._load()

    # ---- persistence -------------------------------------------------------------------------------------------
    def _load(self) -> None:
        db = self._db
        for iid, meta in db.execute("SELECT id, meta FROM instances"):
            self.instances[iid] = Instance.from_meta(iid, meta)
        for loaded in self.instances.values():
            loaded.evicted = loaded.terminal
        for iid, blob in db.execute("SELECT instance_id, event FROM history ORDER BY instance_id, idx"):
            owner = self.instances.get(iid)
            if owner is not None and not owner.evicted:
                owner.history.append(pb.HistoryEvent.FromString(blob))
        now = time.time()
        for rowid, iid, due, blob in db.execute("SELECT rowid, instance_id, due, event FROM inbox ORDER BY rowid"):
            inst = self.instances.get(iid)
            if inst is None:
                continue
            ev = pb.HistoryEvent.FromString(blob)
            if due <= now:
                inst.inbox.append((rowid, ev))
            else:
                self._pending_timers[rowid] = ev
                heapq.heappush(self._timers, (due, rowid, iid))
        for token, iid, blob in db.execute("SELECT token, instance_id, request FROM activities"):
            self._activities[token] = Activity(token, iid, pb.ActivityRequest.FromString(blob))
        for inst in self.instances.values():
            self._maybe_queue(inst)
        for act in self._activities.values():
            act.queued = True
            self._ready.append(("act", act.token))
        if self._ready or self._timers:
            log.info("sidecar resumed: %d work items ready, %d timers", len(self._ready), len(self._timers))

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._changed.notify_all()

    def _save(self, inst: Instance) -> None:
        inst.updated = time.time()
        self._db.execute("INSERT OR REPLACE INTO instances (id, meta) VALUES (?, ?)", (inst.id, inst.meta()))

    def history(self, instance_id: str) -> list[Any]:
        """The full history (from memory, or from SQLite for a finished instance)."""
        with self._lock:
            inst = self.instances.get(instance_id)
            return [] if inst is None else self._history(inst)

    def _history(self, inst: Instance) -> list[Any]:
        if not inst.evicted:
            return list(inst.history)
        rows = self._db.execute("SELECT event FROM history WHERE instance_id = ? ORDER BY idx", (inst.id,))
        return [pb.HistoryEvent.FromString(blob) for (blob,) in rows]

    def _evict(self, inst: Instance) -> None:
        inst.history = []
        inst.evicted = True

    def _append_history(self, inst: Instance, events: list[Any]) -> None:
        start = len(inst.history)
        inst.history.extend(events)
        self._db.executemany(
            "INSERT INTO history (instance_id, idx, event) VALUES (?, ?, ?)",
            [(inst.id, start + i, ev.SerializeToString()) for i, ev in enumerate(events)],
        )

    def _deliver(self, inst: Instance, ev: Any, due: float | None = None) -> None:
        """Put an event in an instance's inbox (now, or as a timer when ``due`` lies ahead)."""
        now = time.time()
        when = now if due is None else due
        cur = self._db.execute(
            "INSERT INTO inbox (instance_id, due, event) VALUES (?, ?, ?)", (inst.id, when, ev.SerializeToString())
        )
        rowid = int(cur.lastrowid or 0)
        if when <= now:
            inst.inbox.append((rowid, ev))
            self._maybe_queue(inst)
        else:
            self._pending_timers[rowid] = ev
            heapq.heappush(self._timers, (when, rowid, inst.id))
            self._timer_cond.notify_all()

    def _clear_pending(self, inst: Instance) -> None:
        """Forget the inbox, timers and activities of an instance (it ended or starts over)."""
        self._db.execute("DELETE FROM inbox WHERE instance_id = ?", (inst.id,))
        self._db.execute("DELETE FROM activities WHERE instance_id = ?", (inst.id,))
        inst.inbox.clear()
        for token in [t for t, a in self._activities.items() if a.instance_id == inst.id]:
            del self._activities[token]
        # Timers of this instance stay in the heap; firing checks ``_pending_timers`` and skips them.
        for rowid in [r for _, r, iid in self._timers if iid == inst.id]:
            self._pending_timers.pop(rowid, None)
        inst.in_flight = None
        inst.in_flight_events = []
        inst.in_flight_rows = []

    def _maybe_queue(self, inst: Instance) -> None:
        if inst.queued or inst.in_flight or not inst.inbox or inst.terminal or inst.status == SUSPENDED:
            return
        inst.queued = True
        self._ready.append(("orch", inst.id))
        self._changed.notify_all()

    # ---- client API --------------------------------------------------------------------------------------------
    def start(
        self,
        instance_id: str,
        name: str,
        input: str | None,
        start_at: float | None = None,
        parent: Any | None = None,
        execution_id: str | None = None,
    ) -> str:
        with self._tx():
            self._start(instance_id, name, input, start_at, parent, execution_id)
        return instance_id

    def _start(
        self,
        instance_id: str,
        name: str,
        input: str | None,
        start_at: float | None,
        parent: Any | None,
        execution_id: str | None,
    ) -> Instance:
        old = self.instances.get(instance_id)
        if old is not None:
            if not old.terminal:
                raise SidecarError("ALREADY_EXISTS", f"a workflow with instance ID '{instance_id}' is already running")
            # Dapr allows reusing the id of a finished workflow: the old state is replaced.
            self._purge(old)
        now = time.time()
        inst = Instance(
            id=instance_id,
            name=name,
            execution_id=execution_id or uuid.uuid4().hex,
            status=PENDING,
            input=input,
            created=now,
            updated=now,
            parent=parent.SerializeToString() if parent is not None else None,
        )
        self.instances[instance_id] = inst
        self._save(inst)
        self._deliver(inst, self._started_event(inst, parent, start_at), due=start_at)
        return inst

    def _started_event(self, inst: Instance, parent: Any | None, start_at: float | None) -> Any:
        started = pb.ExecutionStartedEvent(
            name=inst.name,
            input=string_value(inst.input),
            workflowInstance=pb.WorkflowInstance(instanceId=inst.id, executionId=string_value(inst.execution_id)),
        )
        if parent is not None:
            started.parentInstance.CopyFrom(parent)
        if start_at is not None:
            started.scheduledStartTimestamp.CopyFrom(timestamp(start_at))
        return _event(executionStarted=started)

    def get(self, instance_id: str) -> Instance | None:
        with self._lock:
            return self.instances.get(instance_id)

    def wait(self, instance_id: str, until_started: bool, timeout: float | None) -> Instance | None:
        """Block until the instance has started (or ended), or the timeout passes; the latest state either way."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                inst = self.instances.get(instance_id)
                if inst is not None and (inst.terminal or (until_started and inst.status != PENDING)):
                    return inst
                left = None if deadline is None else deadline - time.monotonic()
                if (left is not None and left <= 0) or self._stopping:
                    return inst
                self._changed.wait(min(left, 1.0) if left is not None else 1.0)

    def raise_event(self, instance_id: str, name: str, input: str | None) -> None:
        with self._tx():
            inst = self.instances.get(instance_id)
            if inst is None:
                raise SidecarError("NOT_FOUND", f"no workflow instance with ID '{instance_id}'")
            if inst.terminal:
                return  # as in Dapr: an event for a finished workflow is accepted and never seen
            self._deliver(inst, _event(eventRaised=pb.EventRaisedEvent(name=name, input=string_value(input))))

    def terminate(self, instance_id: str, output: str | None, recursive: bool) -> None:
        with self._tx():
            inst = self.instances.get(instance_id)
            if inst is None:
                raise SidecarError("NOT_FOUND", f"no workflow instance with ID '{instance_id}'")
            self._terminate(inst, output, recursive, notify_parent=True)

    def _terminate(self, inst: Instance, output: str | None, recursive: bool, notify_parent: bool) -> None:
        if inst.terminal:
            return
        self._clear_pending(inst)
        inst.status = TERMINATED
        inst.output = output
        inst.completed = time.time()
        self._append_history(
            inst,
            [
                _event(executionTerminated=pb.ExecutionTerminatedEvent(input=string_value(output), recurse=recursive)),
                _event(executionCompleted=pb.ExecutionCompletedEvent(workflowStatus=TERMINATED)),
            ],
        )
        self._save(inst)
        if recursive:
            for child_id in inst.children(self._history(inst)):
                child = self.instances.get(child_id)
                if child is not None:
                    self._terminate(child, output, True, notify_parent=False)
        if notify_parent:
            failure = pb.TaskFailureDetails(errorType="WorkflowTerminated", errorMessage=f"{inst.id} was terminated")
            self._notify_parent(inst, None, failure)
        self._evict(inst)

    def suspend(self, instance_id: str, reason: str | None) -> None:
        with self._tx():
            inst = self._existing(instance_id)
            if inst.status in (RUNNING, PENDING):
                inst.status = SUSPENDED
                self._append_history(
                    inst, [_event(executionSuspended=pb.ExecutionSuspendedEvent(input=string_value(reason)))]
                )
                self._save(inst)

    def resume(self, instance_id: str, reason: str | None) -> None:
        with self._tx():
            inst = self._existing(instance_id)
            if inst.status == SUSPENDED:
                inst.status = RUNNING
                self._append_history(
                    inst, [_event(executionResumed=pb.ExecutionResumedEvent(input=string_value(reason)))]
                )
                self._save(inst)
                self._maybe_queue(inst)

    def _existing(self, instance_id: str) -> Instance:
        inst = self.instances.get(instance_id)
        if inst is None:
            raise SidecarError("NOT_FOUND", f"no workflow instance with ID '{instance_id}'")
        return inst

    def purge(self, instance_id: str, recursive: bool, force: bool) -> int:
        with self._tx():
            inst = self.instances.get(instance_id)
            if inst is None:
                return 0
            if not inst.terminal and not force:
                raise SidecarError(
                    "FAILED_PRECONDITION", f"workflow '{instance_id}' is still running; terminate it first"
                )
            return self._purge_tree(inst, recursive)

    def purge_matching(self, created_from: float | None, created_to: float | None, statuses: set[int]) -> int:
        with self._tx():
            count = 0
            for inst in list(self.instances.values()):
                if not inst.terminal:
                    continue
                if created_from is not None and inst.created < created_from:
                    continue
                if created_to is not None and inst.created >= created_to:
                    continue
                if statuses and inst.status not in statuses:
                    continue
                if inst.id in self.instances:
                    count += self._purge_tree(inst, True)
            return count

    def _purge_tree(self, inst: Instance, recursive: bool) -> int:
        count = 0
        if recursive:
            for child_id in inst.children(self._history(inst)):
                child = self.instances.get(child_id)
                if child is not None and child.parent_info() is not None:
                    count += self._purge_tree(child, True)
        self._purge(inst)
        return count + 1

    def _purge(self, inst: Instance) -> None:
        self._clear_pending(inst)
        self._db.execute("DELETE FROM history WHERE instance_id = ?", (inst.id,))
        self._db.execute("DELETE FROM instances WHERE id = ?", (inst.id,))
        self.instances.pop(inst.id, None)

    def list_ids(self, after: str, limit: int) -> tuple[list[str], str | None]:
        with self._lock:
            ids = sorted(i for i in self.instances if i > after)
        page = ids[:limit]
        return page, (page[-1] if len(ids) > limit else None)

    # ---- worker API --------------------------------------------------------------------------------------------
    def open_stream(self) -> Stream:
        with self._lock:
            return Stream(next(self._stream_ids))

    def close_stream(self, stream: Stream) -> None:
        """The worker went away: everything it held is handed out again (at-least-once)."""
        with self._lock:
            stream.closed = True
            for token in list(stream.owned):
                self._owner.pop(token, None)
                if token in self._activities:
                    act = self._activities[token]
                    if not act.queued:
                        act.queued = True
                        self._ready.append(("act", token))
                    continue
                for inst in self.instances.values():
                    if inst.in_flight == token:
                        inst.in_flight = None
                        inst.in_flight_events = []
                        inst.in_flight_rows = []
                        self._maybe_queue(inst)
            stream.owned.clear()
            self._changed.notify_all()

    def next_work_item(self, stream: Stream, timeout: float) -> Any | None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._stopping and not stream.closed:
                while self._ready:
                    kind, key = self._ready.popleft()
                    item = self._orchestration_item(key) if kind == "orch" else self._activity_item(key)
                    if item is not None:
                        token = item.completionToken
                        stream.owned.add(token)
                        self._owner[token] = stream
                        return item
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return None

    def _orchestration_item(self, instance_id: str) -> Any | None:
        inst = self.instances.get(instance_id)
        if inst is None:
            return None
        inst.queued = False
        if inst.in_flight or not inst.inbox or inst.terminal or inst.status == SUSPENDED:
            return None
        token = "o-" + uuid.uuid4().hex
        started = _event(workflowStarted=pb.WorkflowStartedEvent())
        inst.in_flight = token
        inst.in_flight_events = [started] + [ev for _, ev in inst.inbox]
        inst.in_flight_rows = [rowid for rowid, _ in inst.inbox]
        request = pb.WorkflowRequest(
            instanceId=inst.id,
            executionId=string_value(inst.execution_id),
            pastEvents=inst.history,
            newEvents=inst.in_flight_events,
        )
        return pb.WorkItem(workflowRequest=request, completionToken=token)

    def _activity_item(self, token: str) -> Any | None:
        act = self._activities.get(token)
        if act is None:
            return None
        act.queued = False
        if token in self._owner:
            return None
        return pb.WorkItem(activityRequest=act.request, completionToken=token)

    def complete_activity(self, res: Any) -> None:
        with self._tx():
            token = res.completionToken
            self._release(token)
            act = self._activities.pop(token, None)
            if act is None:
                return  # already completed (a re-delivered duplicate) or its workflow ended
            self._db.execute("DELETE FROM activities WHERE token = ?", (token,))
            inst = self.instances.get(act.instance_id)
            if inst is None or inst.terminal:
                return
            if res.HasField("failureDetails"):
                ev = _event(
                    taskFailed=pb.TaskFailedEvent(
                        taskScheduledId=res.taskId,
                        failureDetails=res.failureDetails,
                        taskExecutionId=act.request.taskExecutionId,
                    )
                )
            else:
                ev = _event(
                    taskCompleted=pb.TaskCompletedEvent(
                        taskScheduledId=res.taskId,
                        result=res.result if res.HasField("result") else None,
                        taskExecutionId=act.request.taskExecutionId,
                    )
                )
            self._deliver(inst, ev)

    def _release(self, token: str) -> None:
        stream = self._owner.pop(token, None)
        if stream is not None:
            stream.owned.discard(token)

    def complete_orchestration(self, res: Any) -> None:
        with self._tx():
            token = res.completionToken
            self._release(token)
            inst = self.instances.get(res.instanceId)
            if inst is None or inst.in_flight != token or not token:
                return  # stale: the instance was terminated/purged or the item re-delivered meanwhile
            events = inst.in_flight_events
            rows = set(inst.in_flight_rows)
            inst.in_flight = None
            inst.in_flight_events = []
            inst.in_flight_rows = []
            inst.inbox = [(r, e) for r, e in inst.inbox if r not in rows]
            self._db.executemany("DELETE FROM inbox WHERE rowid = ?", [(r,) for r in rows])
            self._append_history(inst, events)
            if inst.status == PENDING:
                inst.status = RUNNING
            if res.HasField("customStatus"):
                inst.custom_status = res.customStatus.value
            for action in res.actions:
                self._apply(inst, action)
                if inst.terminal or inst.in_flight:  # completed, or continued as new
                    break
            self._save(inst)
            self._maybe_queue(inst)

    def _apply(self, inst: Instance, action: Any) -> None:
        kind = action.WhichOneof("workflowActionType")
        aid = action.id
        if kind == "scheduleTask":
            st = action.scheduleTask
            self._append_history(
                inst,
                [
                    _event(
                        event_id=aid,
                        taskScheduled=pb.TaskScheduledEvent(
                            name=st.name,
                            version=st.version if st.HasField("version") else None,
                            input=st.input if st.HasField("input") else None,
                            taskExecutionId=st.taskExecutionId,
                        ),
                    )
                ],
            )
            token = f"a-{inst.id}-{inst.execution_id}-{aid}-{uuid.uuid4().hex[:8]}"
            req = pb.ActivityRequest(
                name=st.name,
                input=st.input if st.HasField("input") else None,
                workflowInstance=pb.WorkflowInstance(instanceId=inst.id, executionId=string_value(inst.execution_id)),
                taskId=aid,
                taskExecutionId=st.taskExecutionId,
            )
            self._activities[token] = Activity(token, inst.id, req, queued=True)
            self._db.execute(
                "INSERT INTO activities (token, instance_id, request) VALUES (?, ?, ?)",
                (token, inst.id, req.SerializeToString()),
            )
            self._ready.append(("act", token))
        elif kind == "createTimer":
            ct = action.createTimer
            created = pb.TimerCreatedEvent(fireAt=ct.fireAt)
            if ct.HasField("name"):
                created.name = ct.name
            origin = ct.WhichOneof("origin")
            if origin:
                getattr(created, origin).CopyFrom(getattr(ct, origin))
            self._append_history(inst, [_event(event_id=aid, timerCreated=created)])
            if ct.fireAt.seconds < NEVER_SECONDS:
                fired = _event(timerFired=pb.TimerFiredEvent(fireAt=ct.fireAt, timerId=aid))
                self._deliver(inst, fired, due=ct.fireAt.ToNanoseconds() / 1e9)
        elif kind == "createChildWorkflow":
            cc = action.createChildWorkflow
            child_id = cc.instanceId or f"{inst.id}:{aid:04x}"
            self._append_history(
                inst,
                [
                    _event(
                        event_id=aid,
                        childWorkflowInstanceCreated=pb.ChildWorkflowInstanceCreatedEvent(
                            instanceId=child_id, name=cc.name, input=cc.input if cc.HasField("input") else None
                        ),
                    )
                ],
            )
            parent = pb.ParentInstanceInfo(
                taskScheduledId=aid,
                name=string_value(inst.name),
                workflowInstance=pb.WorkflowInstance(instanceId=inst.id, executionId=string_value(inst.execution_id)),
            )
            try:
                self._start(child_id, cc.name, cc.input.value if cc.HasField("input") else None, None, parent, None)
            except SidecarError as exc:
                failure = pb.TaskFailureDetails(errorType="WorkflowAlreadyExists", errorMessage=str(exc))
                self._deliver(
                    inst,
                    _event(
                        childWorkflowInstanceFailed=pb.ChildWorkflowInstanceFailedEvent(
                            taskScheduledId=aid, failureDetails=failure
                        )
                    ),
                )
        elif kind == "createDetachedWorkflow":
            cd = action.createDetachedWorkflow
            self._append_history(
                inst,
                [
                    _event(
                        event_id=aid,
                        detachedWorkflowInstanceCreated=pb.DetachedWorkflowInstanceCreatedEvent(
                            instanceId=cd.instanceId
                        ),
                    )
                ],
            )
            try:
                self._start(
                    cd.instanceId or uuid.uuid4().hex,
                    cd.name,
                    cd.input.value if cd.HasField("input") else None,
                    None,
                    None,
                    None,
                )
            except SidecarError as exc:
                log.warning("detached workflow not started: %s", exc)
        elif kind == "sendEvent":
            se = action.sendEvent
            data = se.data if se.HasField("data") else None
            self._append_history(
                inst,
                [
                    _event(
                        event_id=aid,
                        eventSent=pb.EventSentEvent(instanceId=se.instance.instanceId, name=se.name, input=data),
                    )
                ],
            )
            target = self.instances.get(se.instance.instanceId)
            if target is not None and not target.terminal:
                self._deliver(target, _event(eventRaised=pb.EventRaisedEvent(name=se.name, input=data)))
        elif kind == "terminateWorkflow":
            tw = action.terminateWorkflow
            target = self.instances.get(tw.instanceId)
            if target is not None:
                reason = tw.reason.value if tw.HasField("reason") else None
                self._terminate(target, reason, tw.recurse, notify_parent=True)
        elif kind == "completeWorkflow":
            self._complete(inst, action.completeWorkflow)
        else:
            log.warning("workflow %s: ignoring unsupported action %s", inst.id, kind)

    def _complete(self, inst: Instance, cw: Any) -> None:
        status = cw.workflowStatus
        result = cw.result.value if cw.HasField("result") else None
        if status == CONTINUED_AS_NEW:
            leftover = [ev for _, ev in inst.inbox]
            parent = inst.parent_info()
            self._clear_pending(inst)
            self._db.execute("DELETE FROM history WHERE instance_id = ?", (inst.id,))
            inst.history = []
            inst.execution_id = uuid.uuid4().hex
            inst.input = result
            inst.status = RUNNING
            self._deliver(inst, self._started_event(inst, parent, None))
            for ev in list(cw.carryoverEvents) + leftover:
                self._deliver(inst, ev)
            return
        failure = cw.failureDetails if cw.HasField("failureDetails") else None
        inst.status = status if status in TERMINAL else FAILED
        inst.output = result
        inst.failure = failure.SerializeToString() if failure is not None else None
        inst.completed = time.time()
        self._append_history(
            inst,
            [
                _event(
                    executionCompleted=pb.ExecutionCompletedEvent(
                        workflowStatus=inst.status,
                        result=cw.result if cw.HasField("result") else None,
                        failureDetails=failure,
                    )
                )
            ],
        )
        self._clear_pending(inst)
        self._evict(inst)
        if inst.status == COMPLETED:
            self._notify_parent(inst, result, None)
        else:
            self._notify_parent(
                inst,
                None,
                failure or pb.TaskFailureDetails(errorType="WorkflowFailed", errorMessage=f"{inst.id} ended"),
            )

    def _notify_parent(self, child: Instance, result: str | None, failure: Any | None) -> None:
        info = child.parent_info()
        if info is None:
            return
        parent = self.instances.get(info.workflowInstance.instanceId)
        if parent is None or parent.terminal:
            return
        if (
            info.workflowInstance.HasField("executionId")
            and info.workflowInstance.executionId.value != parent.execution_id
        ):
            return  # the parent continued as new: this child belongs to an old execution
        if failure is None:
            ev = _event(
                childWorkflowInstanceCompleted=pb.ChildWorkflowInstanceCompletedEvent(
                    taskScheduledId=info.taskScheduledId, result=string_value(result)
                )
            )
        else:
            ev = _event(
                childWorkflowInstanceFailed=pb.ChildWorkflowInstanceFailedEvent(
                    taskScheduledId=info.taskScheduledId, failureDetails=failure
                )
            )
        self._deliver(parent, ev)

    # ---- timers ------------------------------------------------------------------------------------------------
    def run_timers(self) -> None:
        """Move due timers into their instance's inbox; runs on its own thread until ``stop``."""
        with self._lock:
            while not self._stopping:
                now = time.time()
                fired: list[tuple[int, str]] = []
                while self._timers and self._timers[0][0] <= now:
                    _, rowid, iid = heapq.heappop(self._timers)
                    fired.append((rowid, iid))
                for rowid, iid in fired:
                    ev = self._pending_timers.pop(rowid, None)
                    inst = self.instances.get(iid)
                    if ev is None or inst is None or inst.terminal:
                        continue
                    inst.inbox.append((rowid, ev))  # the row is already in SQLite with its due time
                    self._maybe_queue(inst)
                wait = (self._timers[0][0] - time.time()) if self._timers else 1.0
                self._timer_cond.wait(max(0.001, min(wait, 1.0)))

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._changed.notify_all()
            self._timer_cond.notify_all()
