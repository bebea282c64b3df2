"""The orchestration engine behind the embedded sidecar: instances, histories, inboxes, activities, durable timers.

It implements the backend half of the Durable Task protocol that the unmodified Dapr workflow SDK speaks: the SDK
replays ``pastEvents``, applies ``newEvents`` and answers with actions; the engine turns actions into history events,
activity work items, timers and child instances. State lives in memory and every change is written through to SQLite
in the same transaction before the RPC that caused it is answered, so a killed process resumes exactly where the
last acknowledged step left it. One lock guards everything: the work is tiny compared to the RPC and the SDK.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb
from google.protobuf import timestamp_pb2, wrappers_pb2

from budeval.logs import get_logger
from budeval.sidecar.store import SidecarStore

RUNNING = pb.ORCHESTRATION_STATUS_RUNNING
COMPLETED = pb.ORCHESTRATION_STATUS_COMPLETED
CONTINUED_AS_NEW = pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW
FAILED = pb.ORCHESTRATION_STATUS_FAILED
CANCELED = pb.ORCHESTRATION_STATUS_CANCELED
TERMINATED = pb.ORCHESTRATION_STATUS_TERMINATED
PENDING = pb.ORCHESTRATION_STATUS_PENDING
SUSPENDED = pb.ORCHESTRATION_STATUS_SUSPENDED
TERMINAL = frozenset({COMPLETED, FAILED, CANCELED, TERMINATED})

#: fireAt of the "optional" timer that backs an indefinite wait_for_external_event: it never fires.
NEVER_SECONDS = 253402300799
START_TIMER_ID = -1  # the timer of an instance scheduled to start later


class EngineError(Exception):
    """A request the engine refuses; ``code`` names the gRPC status the servicer answers with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _ts(seconds: float) -> Any:
    stamp = timestamp_pb2.Timestamp()
    whole = int(seconds)
    stamp.seconds, stamp.nanos = whole, int((seconds - whole) * 1e9)
    return stamp


def _seconds(stamp: Any) -> float:
    return float(stamp.seconds) + float(stamp.nanos) / 1e9


def _sv(value: str | None) -> Any:
    return wrappers_pb2.StringValue(value=value) if value is not None else None


def _event(**kind: Any) -> Any:
    return pb.HistoryEvent(eventId=-1, timestamp=_ts(time.time()), **kind)


@dataclass
class Instance:
    """One workflow instance: metadata, committed history and the events not yet shown to the orchestrator."""

    id: str
    name: str
    execution_id: str
    status: int
    created: float
    updated: float
    completed: float | None = None
    start_at: float | None = None
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    failure: bytes | None = None
    parent_id: str | None = None
    parent_task_id: int | None = None
    parent_execution_id: str | None = None
    history: list[Any] = field(default_factory=list)
    inbox: list[tuple[int, Any]] = field(default_factory=list)
    in_flight: str | None = None  # completion token of the dispatched work item
    stream: int | None = None
    delivered: int = 0
    started_event: Any = None
    queued: bool = False
    offloaded: bool = False  # an ended instance's history lives only in SQLite (read on demand)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass
class Activity:
    instance_id: str
    task_id: int
    execution_id: str
    request: Any
    token: str
    stream: int | None = None


class Engine:
    """All workflow state; the gRPC servicer is a thin translation layer over these methods."""

    def __init__(self, store: SidecarStore) -> None:
        self.store = store
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

    def _load(self) -> None:
        """Rebuild memory from SQLite; every unfinished step is queued again (nothing was in flight before)."""
        db = self.store.db
        with self.lock:
            for row in db.execute(
                "SELECT id, name, execution_id, status, created, updated, completed, start_at, input, output, "
                "custom_status, failure, parent_id, parent_task_id, parent_execution_id FROM instances"
            ):
                inst = Instance(*row)
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
            for iid, tid, eid, blob in db.execute("SELECT instance_id, task_id, execution_id, request FROM activities"):
                key = (iid, tid)
                self.activities[key] = Activity(iid, tid, eid, pb.ActivityRequest.FromString(blob), self._token("a"))
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
            " input, output, custom_status, failure, parent_id, parent_task_id, parent_execution_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (inst.id, inst.name, inst.execution_id, inst.status, inst.created, inst.updated, inst.completed,
             inst.start_at, inst.input, inst.output, inst.custom_status, inst.failure, inst.parent_id,
             inst.parent_task_id, inst.parent_execution_id),
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
        self.work_cv.notify()

    # ---- work item streams -----------------------------------------------------------------------------------
    def stream(self, is_active: Callable[[], bool]) -> Iterator[Any]:
        """Work items for one GetWorkItems stream; what it took but did not finish goes back when it ends."""
        sid = next(self._ids)
        with self.lock:
            self.streams[sid] = set()
        try:
            while True:
                with self.lock:
                    item = None
                    while item is None:
                        if self.closed or not is_active():
                            return
                        if self.work:
                            item = self._take(sid, self.work.popleft())
                        else:
                            self.work_cv.wait(timeout=0.5)
                yield item
        finally:
            self._drop_stream(sid)

    def wake_streams(self) -> None:
        with self.lock:
            self.work_cv.notify_all()

    def _take(self, sid: int, entry: tuple[str, Any]) -> Any:
        kind, key = entry
        now = time.time()
        if kind == "a":
            act = self.activities.get(key)
            if act is None or act.stream is not None:
                return None
            act.stream = sid
            self.streams[sid].add(entry)
            return pb.WorkItem(activityRequest=act.request, completionToken=act.token)
        inst = self.instances.get(key)
        if inst is None:
            return None
        inst.queued = False
        if inst.in_flight or not inst.inbox or inst.terminal:
            return None
        if inst.start_at is not None and inst.start_at > now:
            return None
        inst.in_flight, inst.stream, inst.delivered = self._token("o"), sid, len(inst.inbox)
        inst.started_event = pb.HistoryEvent(eventId=-1, timestamp=_ts(now), workflowStarted=pb.WorkflowStartedEvent())
        self.streams[sid].add(entry)
        request = pb.WorkflowRequest(
            instanceId=inst.id,
            executionId=_sv(inst.execution_id),
            pastEvents=inst.history,
            newEvents=[inst.started_event, *(ev for _, ev in inst.inbox)],
        )
        return pb.WorkItem(workflowRequest=request, completionToken=inst.in_flight)

    def _drop_stream(self, sid: int) -> None:
        with self.lock:
            taken = self.streams.pop(sid, set())
            for kind, key in taken:
                if kind == "a":
                    act = self.activities.get(key)
                    if act is not None and act.stream == sid:
                        act.stream = None
                        self.work.append(("a", key))
                else:
                    inst = self.instances.get(key)
                    if inst is not None and inst.stream == sid and inst.in_flight:
                        inst.in_flight, inst.stream = None, None
                        self._enqueue(inst)
            if taken:
                self.log.info("work items of a closed stream queued again", count=len(taken))
                self.work_cv.notify_all()

    # ---- results from the worker -------------------------------------------------------------------------------
    def complete_orchestration(self, res: Any) -> None:
        with self.lock:
            inst = self.instances.get(res.instanceId)
            if inst is None or not inst.in_flight or inst.in_flight != res.completionToken:
                return  # stale: the item was re-dispatched, or the instance was terminated/purged meanwhile
            if inst.stream is not None:
                self.streams.get(inst.stream, set()).discard(("o", inst.id))
            delivered = inst.inbox[: inst.delivered]
            with self.store.tx() as db:
                db.executemany("DELETE FROM inbox WHERE seq=?", [(seq,) for seq, _ in delivered])
                inst.inbox = inst.inbox[inst.delivered :]
                inst.in_flight, inst.stream, inst.delivered = None, None, 0
                self._apply(inst, [inst.started_event, *(ev for _, ev in delivered)], res)
            self._enqueue(inst)
            self.changed.notify_all()

    def _apply(self, inst: Instance, new_events: list[Any], res: Any) -> None:
        now = time.time()
        events = list(new_events)
        after: list[Callable[[], Any]] = []
        complete = None
        for action in res.actions:
            kind = action.WhichOneof("workflowActionType")
            stamp = _ts(now)
            if kind == "scheduleTask":
                st = action.scheduleTask
                events.append(pb.HistoryEvent(eventId=action.id, timestamp=stamp, taskScheduled=pb.TaskScheduledEvent(
                    name=st.name, version=st.version, input=st.input, taskExecutionId=st.taskExecutionId)))
                self._schedule_activity(inst, action.id, st)
            elif kind == "createTimer":
                self._create_timer(inst, action.id, action.createTimer, events, stamp)
            elif kind == "createChildWorkflow":
                cc = action.createChildWorkflow
                events.append(pb.HistoryEvent(
                    eventId=action.id, timestamp=stamp,
                    childWorkflowInstanceCreated=pb.ChildWorkflowInstanceCreatedEvent(
                        instanceId=cc.instanceId, name=cc.name, version=cc.version, input=cc.input)))
                after.append(partial(self._start_child, inst, action.id, cc))
            elif kind == "sendEvent":
                se = action.sendEvent
                events.append(pb.HistoryEvent(eventId=action.id, timestamp=stamp, eventSent=pb.EventSentEvent(
                    instanceId=se.instance.instanceId, name=se.name, input=se.data)))
                after.append(partial(self._raise, se.instance.instanceId, se.name,
                                     se.data.value if se.HasField("data") else None, quiet=True))
            elif kind == "terminateWorkflow":
                tw = action.terminateWorkflow
                after.append(partial(self._terminate, tw.instanceId,
                                     tw.reason.value if tw.HasField("reason") else None, tw.recurse))
            elif kind == "createDetachedWorkflow":
                after.append(partial(self._start_detached, action.createDetachedWorkflow))
            elif kind == "completeWorkflow":
                complete = action.completeWorkflow
        self._append_history(inst, events)
        if res.HasField("customStatus"):
            inst.custom_status = res.customStatus.value
        if inst.status == PENDING:
            inst.status = RUNNING
        for step in after:
            step()
        if complete is not None:
            if complete.workflowStatus == CONTINUED_AS_NEW:
                self._continue_as_new(inst, complete)
            else:
                self._finish(inst, complete.workflowStatus,
                             complete.result.value if complete.HasField("result") else None,
                             complete.failureDetails if complete.HasField("failureDetails") else None)
        self._save(inst)

    def _schedule_activity(self, inst: Instance, task_id: int, st: Any) -> None:
        request = pb.ActivityRequest(
            name=st.name, version=st.version, input=st.input, taskId=task_id, taskExecutionId=st.taskExecutionId,
            workflowInstance=pb.WorkflowInstance(instanceId=inst.id, executionId=_sv(inst.execution_id)),
        )
        self.store.db.execute(
            "INSERT OR REPLACE INTO activities (instance_id, task_id, execution_id, request) VALUES (?,?,?,?)",
            (inst.id, task_id, inst.execution_id, request.SerializeToString()),
        )
        key = (inst.id, task_id)
        self.activities[key] = Activity(inst.id, task_id, inst.execution_id, request, self._token("a"))
        self.work.append(("a", key))
        self.work_cv.notify()

    def _create_timer(self, inst: Instance, timer_id: int, ct: Any, events: list[Any], stamp: Any) -> None:
        created = pb.TimerCreatedEvent(fireAt=ct.fireAt)
        if ct.HasField("name"):
            created.name = ct.name
        origin = ct.WhichOneof("origin")
        if origin:
            getattr(created, origin).CopyFrom(getattr(ct, origin))
        events.append(pb.HistoryEvent(eventId=timer_id, timestamp=stamp, timerCreated=created))
        if ct.fireAt.seconds >= NEVER_SECONDS:
            return  # an indefinite wait's placeholder timer never fires
        fired = pb.HistoryEvent(eventId=-1, timerFired=pb.TimerFiredEvent(fireAt=ct.fireAt, timerId=timer_id))
        self._add_timer(inst, timer_id, _seconds(ct.fireAt), fired)

    def _add_timer(self, inst: Instance, timer_id: int, fire_at: float, fired: Any) -> None:
        self.store.db.execute(
            "INSERT OR REPLACE INTO timers (instance_id, timer_id, execution_id, fire_at, event) VALUES (?,?,?,?,?)",
            (inst.id, timer_id, inst.execution_id, fire_at, fired.SerializeToString()),
        )
        self.timers[(inst.id, timer_id)] = (fire_at, inst.execution_id, fired)
        heapq.heappush(self.heap, (fire_at, inst.id, timer_id, inst.execution_id))
        if self.heap[0][1:3] == (inst.id, timer_id):
            self.timer_cv.notify()

    def _start_child(self, parent: Instance, task_id: int, cc: Any) -> None:
        existing = self.instances.get(cc.instanceId)
        if existing is not None and not existing.terminal:
            failure = pb.TaskFailureDetails(errorType="WorkflowAlreadyExists",
                                            errorMessage=f"an active workflow with ID '{cc.instanceId}' already exists")
            self._add_inbox(parent, _event(childWorkflowInstanceFailed=pb.ChildWorkflowInstanceFailedEvent(
                taskScheduledId=task_id, failureDetails=failure)))
            return
        self._create(cc.instanceId, cc.name, cc.input.value if cc.HasField("input") else None, (parent, task_id))

    def _start_detached(self, cd: Any) -> None:
        existing = self.instances.get(cd.instanceId)
        if existing is None or existing.terminal:
            self._create(cd.instanceId or uuid.uuid4().hex, cd.name,
                         cd.input.value if cd.HasField("input") else None, None)

    def _continue_as_new(self, inst: Instance, complete: Any) -> None:
        rest = [ev for _, ev in inst.inbox]
        self._drop_tasks(inst)
        self._clear_inbox(inst)
        self.store.db.execute("DELETE FROM history WHERE instance_id=?", (inst.id,))
        inst.history = []
        inst.execution_id = uuid.uuid4().hex
        inst.input = complete.result.value if complete.HasField("result") else None
        inst.status = RUNNING
        self._add_inbox(inst, self._started_event(inst))
        for ev in [*complete.carryoverEvents, *rest]:
            self._add_inbox(inst, ev)

    def _finish(self, inst: Instance, status: int, output: str | None, failure: Any) -> None:
        now = time.time()
        inst.status, inst.output, inst.completed = status, output, now
        inst.failure = failure.SerializeToString() if failure is not None else None
        inst.in_flight, inst.stream = None, None
        self._append_history(inst, [_event(executionCompleted=pb.ExecutionCompletedEvent(
            workflowStatus=status, result=_sv(output), failureDetails=failure))])
        self._drop_tasks(inst)
        self._clear_inbox(inst)
        self._save(inst)
        # a long-running service would otherwise keep every finished history in memory
        inst.history, inst.offloaded = [], True
        parent = self.instances.get(inst.parent_id or "")
        if parent is None or parent.terminal or parent.execution_id != inst.parent_execution_id:
            return
        if status == COMPLETED:
            ev = _event(childWorkflowInstanceCompleted=pb.ChildWorkflowInstanceCompletedEvent(
                taskScheduledId=inst.parent_task_id, result=_sv(output)))
        else:
            if failure is None:
                failure = pb.TaskFailureDetails(errorType="WorkflowTerminated" if status == TERMINATED else "Failed",
                                                errorMessage=f"child workflow '{inst.id}' ended {_status_name(status)}")
            ev = _event(childWorkflowInstanceFailed=pb.ChildWorkflowInstanceFailedEvent(
                taskScheduledId=inst.parent_task_id, failureDetails=failure))
        self._add_inbox(parent, ev)

    def _started_event(self, inst: Instance) -> Any:
        started = pb.ExecutionStartedEvent(
            name=inst.name, input=_sv(inst.input),
            workflowInstance=pb.WorkflowInstance(instanceId=inst.id, executionId=_sv(inst.execution_id)),
        )
        parent = self.instances.get(inst.parent_id or "")
        if parent is not None:
            started.parentInstance.CopyFrom(pb.ParentInstanceInfo(
                taskScheduledId=inst.parent_task_id or 0, name=_sv(parent.name),
                workflowInstance=pb.WorkflowInstance(instanceId=parent.id, executionId=_sv(parent.execution_id))))
        if inst.start_at is not None:
            started.scheduledStartTimestamp.CopyFrom(_ts(inst.start_at))
        return _event(executionStarted=started)

    def _create(self, instance_id: str, name: str, input_json: str | None,
                parent: tuple[Instance, int] | None, start_at: float | None = None) -> Instance:
        old = self.instances.get(instance_id)
        if old is not None:
            self._purge_one(old)
        now = time.time()
        inst = Instance(id=instance_id, name=name, execution_id=uuid.uuid4().hex, status=PENDING, created=now,
                        updated=now, input=input_json, start_at=start_at if start_at and start_at > now else None)
        if parent is not None:
            inst.parent_id, inst.parent_task_id = parent[0].id, parent[1]
            inst.parent_execution_id = parent[0].execution_id
            self.children.setdefault(parent[0].id, set()).add(inst.id)
        self.instances[instance_id] = inst
        self._save(inst)
        self._add_inbox(inst, self._started_event(inst))
        if inst.start_at is not None:
            self._add_timer(inst, START_TIMER_ID, inst.start_at, pb.HistoryEvent())
        return inst

    # ---- client operations ---------------------------------------------------------------------------------------
    def start_instance(self, instance_id: str, name: str, input_json: str | None, start_at: float | None) -> str:
        """A new instance; an existing id is refused unless that instance has ended (then it is replaced)."""
        if not instance_id:
            instance_id = uuid.uuid4().hex
        with self.lock:
            old = self.instances.get(instance_id)
            if old is not None and not old.terminal:
                raise EngineError("ALREADY_EXISTS", f"an active workflow with ID '{instance_id}' already exists")
            with self.store.tx():
                self._create(instance_id, name, input_json, None, start_at)
            self.changed.notify_all()
        return instance_id

    def raise_event(self, instance_id: str, name: str, input_json: str | None) -> None:
        with self.lock, self.store.tx():
            self._raise(instance_id, name, input_json)

    def _raise(self, instance_id: str, name: str, input_json: str | None, quiet: bool = False) -> None:
        inst = self.instances.get(instance_id)
        if inst is None:
            if quiet:
                return
            raise EngineError("NOT_FOUND", f"no such instance exists: '{instance_id}'")
        if inst.terminal:
            return  # like daprd: events for a finished instance are discarded
        self._add_inbox(inst, _event(eventRaised=pb.EventRaisedEvent(name=name, input=_sv(input_json))))

    def terminate(self, instance_id: str, output: str | None, recursive: bool) -> None:
        with self.lock:
            if instance_id not in self.instances:
                raise EngineError("NOT_FOUND", f"no such instance exists: '{instance_id}'")
            with self.store.tx():
                self._terminate(instance_id, output, recursive)
            self.changed.notify_all()

    def _terminate(self, instance_id: str, output: str | None, recursive: bool) -> None:
        """Ends the instance now (it does not wait for the worker); children first when ``recursive``."""
        inst = self.instances.get(instance_id)
        if inst is None or inst.terminal:
            return
        if recursive:
            for child in sorted(self.children.get(instance_id, ())):
                self._terminate(child, output, True)
        self._append_history(inst, [_event(executionTerminated=pb.ExecutionTerminatedEvent(
            input=_sv(output), recurse=recursive))])
        self._finish(inst, TERMINATED, output, None)

    def suspend(self, instance_id: str, reason: str | None) -> None:
        self._set_suspended(instance_id, reason, True)

    def resume(self, instance_id: str, reason: str | None) -> None:
        self._set_suspended(instance_id, reason, False)

    def _set_suspended(self, instance_id: str, reason: str | None, suspend: bool) -> None:
        with self.lock:
            inst = self.instances.get(instance_id)
            if inst is None:
                raise EngineError("NOT_FOUND", f"no such instance exists: '{instance_id}'")
            if inst.terminal or (inst.status == SUSPENDED) == suspend:
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

    def complete_activity(self, res: Any) -> None:
        with self.lock:
            key = (res.instanceId, res.taskId)
            act = self.activities.get(key)
            if act is None or act.token != res.completionToken:
                return  # a duplicate (re-dispatched) or late result: the first one counted
            inst = self.instances.get(res.instanceId)
            with self.store.tx() as db:
                db.execute("DELETE FROM activities WHERE instance_id=? AND task_id=?", key)
                del self.activities[key]
                if act.stream is not None:
                    self.streams.get(act.stream, set()).discard(("a", key))
                if inst is None or inst.terminal or inst.execution_id != act.execution_id:
                    return
                tx_id = act.request.taskExecutionId
                if res.HasField("failureDetails"):
                    ev = _event(taskFailed=pb.TaskFailedEvent(taskScheduledId=res.taskId,
                                                              failureDetails=res.failureDetails, taskExecutionId=tx_id))
                else:
                    ev = _event(taskCompleted=pb.TaskCompletedEvent(
                        taskScheduledId=res.taskId, result=res.result if res.HasField("result") else None,
                        taskExecutionId=tx_id))
                self._add_inbox(inst, ev)

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
            if inst.failure is not None:
                ws.failureDetails.CopyFrom(pb.TaskFailureDetails.FromString(inst.failure))
            if payloads:
                for attr, value in (("input", inst.input), ("output", inst.output),
                                    ("customStatus", inst.custom_status)):
                    if value is not None:
                        getattr(ws, attr).CopyFrom(_sv(value))
            return pb.GetInstanceResponse(exists=True, workflowState=ws)

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

    # ---- timers --------------------------------------------------------------------------------------------------
    def _timer_loop(self) -> None:
        with self.lock:
            while not self.closed:
                now = time.time()
                while self.heap and self.heap[0][0] <= now:
                    fire_at, iid, tid, eid = heapq.heappop(self.heap)
                    entry = self.timers.get((iid, tid))
                    if entry is None or entry[0] != fire_at or entry[1] != eid:
                        continue
                    self._fire(iid, tid, entry[2])
                wait = self.heap[0][0] - now if self.heap else 1.0
                self.timer_cv.wait(max(0.001, min(wait, 1.0)))

    def _fire(self, instance_id: str, timer_id: int, fired: Any) -> None:
        inst = self.instances.get(instance_id)
        try:
            with self.store.tx() as db:
                db.execute("DELETE FROM timers WHERE instance_id=? AND timer_id=?", (instance_id, timer_id))
                del self.timers[(instance_id, timer_id)]
                if inst is None or inst.terminal:
                    return
                if timer_id == START_TIMER_ID:
                    inst.start_at = None
                    self._save(inst)
                    self._enqueue(inst)
                    return
                fired.timestamp.CopyFrom(_ts(time.time()))
                self._add_inbox(inst, fired)
        except Exception as exc:  # keep the timer thread alive; the row stays for the next start
            self.log.error("timer not fired", instance_id=instance_id, error=repr(exc))


def _status_name(status: int) -> str:
    return str(pb.OrchestrationStatus.Name(status)).removeprefix("ORCHESTRATION_STATUS_")
