"""Work-item streams: the queue of orchestration and activity work items handed to ``GetWorkItems`` streams, and
the worker's results coming back.

A work item is ``("o", instance_id)`` (an orchestration turn: ``pastEvents`` = committed history, ``newEvents`` =
``WorkflowStarted`` + the inbox) or ``("a", (instance_id, task_id))`` (an activity request). Each dispatch carries a
completion token; only the current token's result counts (stale or duplicate results are ignored). What a stream
took but did not finish goes back into the queue when the stream ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb

from budeval.sidecar import versioning
from budeval.sidecar.history import HistoryBuilder
from budeval.sidecar.model import STALLED, Instance, _event, _sv, _ts


class WorkStreams(HistoryBuilder):
    """Adds the ``GetWorkItems`` streams and the ``Complete*Task`` results on top of the history-building steps."""

    def stream(self, is_active: Callable[[], bool], app_id: str | None = None) -> Iterator[Any]:
        """Work items for one GetWorkItems stream of a worker of ``app_id`` (default: the sidecar's own app); what it
        took but did not finish goes back when it ends."""
        sid = next(self._ids)
        app = app_id or self.app_id
        with self.lock:
            self.streams[sid] = set()
            if self.stalled_waiting():
                self.log.info("a worker connected: stalled workflows are offered to it", app_id=app)
        try:
            while True:
                with self.lock:
                    item = None
                    while item is None:
                        if self.closed or not is_active():
                            return
                        item = self._next(sid, app)
                        if item is None:
                            self.work_cv.wait(timeout=0.5)
                yield item
        finally:
            self._drop_stream(sid)

    def stalled_waiting(self) -> int:
        """How many instances are STALLED (each waits for a worker it has not stalled on)."""
        return sum(1 for inst in self.instances.values() if inst.status == STALLED)

    def _next(self, sid: int, app: str) -> Any:
        """The first queued work item this stream may run (FIFO); items for other apps, or of instances this stream
        stalled, stay queued in order; stale entries are dropped."""
        skipped: list[tuple[str, Any]] = []
        item = None
        while self.work and item is None:
            entry = self.work.popleft()
            fits = self._fits(sid, app, entry)
            if fits is None:
                continue
            if not fits:
                skipped.append(entry)
                continue
            item = self._take(sid, entry)
        self.work.extendleft(reversed(skipped))
        return item

    def _fits(self, sid: int, app: str, entry: tuple[str, Any]) -> bool | None:
        kind, key = entry
        if kind == "a":
            act = self.activities.get(key)
            if act is None or act.stream is not None:
                return None
            return act.app_id == app
        inst = self.instances.get(key)
        if inst is None:
            return None
        if sid in inst.stalled_on:  # that worker lacks this instance's code: not its later turns either
            return False
        return inst.app_id == app

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
            propagatedHistory=pb.PropagatedHistory.FromString(inst.propagated) if inst.propagated else None,
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

    def complete_orchestration(self, res: Any) -> None:
        with self.lock:
            inst = self.instances.get(res.instanceId)
            if inst is None or not inst.in_flight or inst.in_flight != res.completionToken:
                return  # stale: the item was re-dispatched, or the instance was terminated/purged meanwhile
            sid = inst.stream
            if sid is not None:
                self.streams.get(sid, set()).discard(("o", inst.id))
            stall = versioning.stall_reason(inst.history, res)
            if stall is not None:  # nothing of the turn is applied; its events stay in the inbox for a later worker
                with self.store.tx():
                    self._stall(inst, *stall)
                inst.in_flight, inst.stream, inst.delivered = None, None, 0
                if sid is not None:
                    inst.stalled_on.add(sid)
                self._enqueue(inst)
                self.changed.notify_all()
                return
            version = versioning.version_to_record(inst.history, res)
            if version is not None:
                inst.started_event.workflowStarted.version.CopyFrom(version)
            delivered = inst.inbox[: inst.delivered]
            with self.store.tx() as db:
                db.executemany("DELETE FROM inbox WHERE seq=?", [(seq,) for seq, _ in delivered])
                inst.inbox = inst.inbox[inst.delivered :]
                inst.in_flight, inst.stream, inst.delivered = None, None, 0
                self._apply(inst, [inst.started_event, *(ev for _, ev in delivered)], res)
            self._enqueue(inst)
            self.changed.notify_all()

    def _stall(self, inst: Instance, reason: int, description: str) -> None:
        """STALLED with an ``ExecutionStalled`` event (not repeated while the description stays the same)."""
        last = inst.history[-1] if inst.history else None
        if last is None or not last.HasField("executionStalled") or last.executionStalled.description != description:
            self._append_history(inst, [_event(executionStalled=pb.ExecutionStalledEvent(
                reason=reason, description=description))])
        if inst.status != STALLED:
            self.log.warning("workflow stalled", instance_id=inst.id, reason=description)
        inst.status = STALLED
        self._save(inst)

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
