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

from budeval.sidecar.history import HistoryBuilder
from budeval.sidecar.model import _event, _sv, _ts


class WorkStreams(HistoryBuilder):
    """Adds the ``GetWorkItems`` streams and the ``Complete*Task`` results on top of the history-building steps."""

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
