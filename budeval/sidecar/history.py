"""History building: the worker's actions and the client's commands turned into history and inbox events.

The SDK answers a work item with actions (``scheduleTask``, ``createTimer``, ``createChildWorkflow``, ``sendEvent``,
``terminateWorkflow``, ``createDetachedWorkflow``, ``completeWorkflow``); :meth:`HistoryBuilder._apply` appends the
delivered events and one history event per action (``eventId`` = the action id), queues activities, stores timers,
creates children and ends or continues the instance. All of it runs in the caller's ``store.tx()`` under the lock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb

from budeval.sidecar import propagation
from budeval.sidecar.model import (
    COMPLETED,
    CONTINUED_AS_NEW,
    NEVER_SECONDS,
    PENDING,
    RUNNING,
    STALLED,
    START_TIMER_ID,
    SUSPENDED,
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
from budeval.sidecar.timers import Timers


class HistoryBuilder(Timers):
    """Adds the history-building steps: applying a worker's actions, creating, raising to, terminating and ending
    instances (parents hear of a child's end through their inbox)."""

    def _apply(self, inst: Instance, new_events: list[Any], res: Any) -> None:
        now = time.time()
        events = list(new_events)
        after: list[Callable[[], Any]] = []
        complete = None
        for action in res.actions:
            kind = action.WhichOneof("workflowActionType")
            stamp = _ts(now)
            router = pb.TaskRouter(sourceAppID=inst.app_id)
            target = inst.app_id
            if action.HasField("router") and action.router.targetAppID:
                target = router.targetAppID = action.router.targetAppID
            if kind == "scheduleTask":
                st = action.scheduleTask
                events.append(pb.HistoryEvent(eventId=action.id, timestamp=stamp, router=router,
                                              taskScheduled=pb.TaskScheduledEvent(
                    name=st.name, version=st.version, input=st.input, taskExecutionId=st.taskExecutionId,
                    historyPropagationScope=st.historyPropagationScope)))
                if target not in self.apps:
                    after.append(partial(self._add_inbox, inst, _event(taskFailed=pb.TaskFailedEvent(
                        taskScheduledId=action.id, taskExecutionId=st.taskExecutionId,
                        failureDetails=self._unknown_app(target, f"activity '{st.name}'")))))
                    continue
                lineage = propagation.assemble(st.historyPropagationScope, inst.propagated, inst.app_id, inst.id,
                                               inst.name, [*inst.history, *events])
                self._schedule_activity(inst, action.id, st, target, lineage)
            elif kind == "createTimer":
                self._create_timer(inst, action.id, action.createTimer, events, stamp)
            elif kind == "createChildWorkflow":
                cc = action.createChildWorkflow
                events.append(pb.HistoryEvent(
                    eventId=action.id, timestamp=stamp, router=router,
                    childWorkflowInstanceCreated=pb.ChildWorkflowInstanceCreatedEvent(
                        instanceId=cc.instanceId, name=cc.name, version=cc.version, input=cc.input,
                        historyPropagationScope=cc.historyPropagationScope)))
                if target not in self.apps:
                    after.append(partial(self._add_inbox, inst, _event(
                        childWorkflowInstanceFailed=pb.ChildWorkflowInstanceFailedEvent(
                            taskScheduledId=action.id,
                            failureDetails=self._unknown_app(target, f"child workflow '{cc.name}'")))))
                    continue
                lineage = propagation.assemble(cc.historyPropagationScope, inst.propagated, inst.app_id, inst.id,
                                               inst.name, [*inst.history, *events])
                after.append(partial(self._start_child, inst, action.id, cc, target,
                                     lineage.SerializeToString() if lineage is not None else None))
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
                after.append(partial(self._start_detached, action.createDetachedWorkflow,
                                     target if target in self.apps else inst.app_id))
            elif kind == "completeWorkflow":
                complete = action.completeWorkflow
        self._append_history(inst, events)
        if res.HasField("customStatus"):
            inst.custom_status = res.customStatus.value
        # (stalled_on stays: the streams that lacked its code get none of its turns)
        if inst.status in (PENDING, STALLED):
            inst.status = SUSPENDED if inst.suspended() else RUNNING
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

    def _unknown_app(self, target: str, what: str) -> Any:
        return pb.TaskFailureDetails(
            errorType="AppNotFound", isNonRetriable=True,
            errorMessage=f"{what} targets app id '{target}', which this sidecar does not serve "
                         f"(it serves: {', '.join(sorted(self.apps))})")

    def _schedule_activity(self, inst: Instance, task_id: int, st: Any, app_id: str, lineage: Any) -> None:
        request = pb.ActivityRequest(
            name=st.name, version=st.version, input=st.input, taskId=task_id, taskExecutionId=st.taskExecutionId,
            workflowInstance=pb.WorkflowInstance(instanceId=inst.id, executionId=_sv(inst.execution_id)),
            propagatedHistory=lineage,
        )
        self.store.db.execute(
            "INSERT OR REPLACE INTO activities (instance_id, task_id, execution_id, request, app_id)"
            " VALUES (?,?,?,?,?)",
            (inst.id, task_id, inst.execution_id, request.SerializeToString(), app_id),
        )
        key = (inst.id, task_id)
        self.activities[key] = Activity(inst.id, task_id, inst.execution_id, request, self._token("a"), app_id=app_id)
        self.work.append(("a", key))
        self.work_cv.notify_all()  # streams take only their app's items: wake them all

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

    def _start_child(self, parent: Instance, task_id: int, cc: Any, app_id: str, lineage: bytes | None) -> None:
        existing = self.instances.get(cc.instanceId)
        if existing is not None and not existing.terminal:
            failure = pb.TaskFailureDetails(errorType="WorkflowAlreadyExists",
                                            errorMessage=f"an active workflow with ID '{cc.instanceId}' already exists")
            self._add_inbox(parent, _event(childWorkflowInstanceFailed=pb.ChildWorkflowInstanceFailedEvent(
                taskScheduledId=task_id, failureDetails=failure)))
            return
        self._create(cc.instanceId, cc.name, cc.input.value if cc.HasField("input") else None, (parent, task_id),
                     app_id=app_id, propagated=lineage)

    def _start_detached(self, cd: Any, app_id: str) -> None:
        existing = self.instances.get(cd.instanceId)
        if existing is None or existing.terminal:
            self._create(cd.instanceId or uuid.uuid4().hex, cd.name,
                         cd.input.value if cd.HasField("input") else None, None, app_id=app_id)

    def _continue_as_new(self, inst: Instance, complete: Any) -> None:
        if inst.propagated:  # the new generation sees the chain, with the old generation's history appended
            lineage = propagation.assemble(propagation.received_scope(inst.propagated), inst.propagated,
                                           inst.app_id, inst.id, inst.name, inst.history)
            inst.propagated = lineage.SerializeToString() if lineage is not None else None
        rest = [ev for _, ev in inst.inbox]
        self._drop_tasks(inst)
        self._clear_inbox(inst)
        self.store.db.execute("DELETE FROM history WHERE instance_id=?", (inst.id,))
        inst.history = []
        inst.execution_id = uuid.uuid4().hex
        # the new generation records no version yet (it starts on the latest): a worker it stalled on may run it
        inst.stalled_on.clear()
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
        inst.stalled_on.clear()
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
                taskScheduledId=inst.parent_task_id or 0, name=_sv(parent.name), appID=parent.app_id,
                workflowInstance=pb.WorkflowInstance(instanceId=parent.id, executionId=_sv(parent.execution_id))))
        if inst.start_at is not None:
            started.scheduledStartTimestamp.CopyFrom(_ts(inst.start_at))
        # the SDK takes the workflow's own app id (ctx.app_id, the source of its calls) from this router
        return _event(executionStarted=started, router=pb.TaskRouter(sourceAppID=inst.app_id))

    def _create(self, instance_id: str, name: str, input_json: str | None,
                parent: tuple[Instance, int] | None, start_at: float | None = None, app_id: str = "",
                propagated: bytes | None = None) -> Instance:
        old = self.instances.get(instance_id)
        if old is not None:
            self._purge_one(old)
        now = time.time()
        inst = Instance(id=instance_id, name=name, execution_id=uuid.uuid4().hex, status=PENDING, created=now,
                        updated=now, input=input_json, start_at=start_at if start_at and start_at > now else None,
                        app_id=app_id or self.app_id, propagated=propagated)
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

    def _raise(self, instance_id: str, name: str, input_json: str | None, quiet: bool = False) -> None:
        inst = self.instances.get(instance_id)
        if inst is None:
            if quiet:
                return
            raise EngineError("NOT_FOUND", f"no such instance exists: '{instance_id}'")
        if inst.terminal:
            return  # like daprd: events for a finished instance are discarded
        self._add_inbox(inst, _event(eventRaised=pb.EventRaisedEvent(name=name, input=_sv(input_json))))

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
