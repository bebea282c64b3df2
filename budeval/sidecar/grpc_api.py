"""The gRPC face of the sidecar: Dapr's TaskHubSidecarService (workflow) and Dapr.PublishEvent on one port."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import grpc

from budeval.sidecar.engine import Engine, Instance, SidecarError
from budeval.sidecar.protos import Timestamp, dapr_grpc, dt_grpc, empty_pb2, pb, string_value, timestamp, wrappers
from budeval.sidecar.pubsub import PubSub

log = logging.getLogger("budeval.sidecar")


def _abort(context: grpc.ServicerContext, exc: SidecarError) -> None:
    context.abort(getattr(grpc.StatusCode, exc.code), str(exc))


def _state(inst: Instance, with_payloads: bool) -> Any:
    state = pb.WorkflowState(
        instanceId=inst.id,
        name=inst.name,
        workflowStatus=inst.status,
        createdTimestamp=timestamp(inst.created),
        lastUpdatedTimestamp=timestamp(inst.updated),
        executionId=string_value(inst.execution_id),
    )
    if inst.completed is not None:
        state.completedTimestamp.CopyFrom(timestamp(inst.completed))
    if with_payloads:
        if inst.input is not None:
            state.input.value = inst.input
        if inst.output is not None:
            state.output.value = inst.output
    if inst.custom_status is not None:
        state.customStatus.value = inst.custom_status
    if inst.failure:
        state.failureDetails.ParseFromString(inst.failure)
    parent = inst.parent_info()
    if parent is not None:
        state.parentInstanceId.value = parent.workflowInstance.instanceId
    return state


def _instance_response(inst: Instance | None, with_payloads: bool) -> Any:
    if inst is None:
        return pb.GetInstanceResponse(exists=False)
    return pb.GetInstanceResponse(exists=True, workflowState=_state(inst, with_payloads))


class TaskHub(dt_grpc.TaskHubSidecarServiceServicer):  # type: ignore[misc]
    """Maps each RPC onto the engine; anything the SDK does not call stays UNIMPLEMENTED (the base class)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def Hello(self, request: Any, context: grpc.ServicerContext) -> Any:
        return empty_pb2.Empty()

    def StartInstance(self, request: Any, context: grpc.ServicerContext) -> Any:
        instance_id = request.instanceId or uuid.uuid4().hex
        start_at = None
        if request.HasField("scheduledStartTimestamp"):
            start_at = request.scheduledStartTimestamp.ToNanoseconds() / 1e9
        try:
            self.engine.start(
                instance_id,
                request.name,
                request.input.value if request.HasField("input") else None,
                start_at=start_at,
                execution_id=request.executionId.value if request.HasField("executionId") else None,
            )
        except SidecarError as exc:
            _abort(context, exc)
        return pb.CreateInstanceResponse(instanceId=instance_id)

    def GetInstance(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _instance_response(self.engine.get(request.instanceId), request.getInputsAndOutputs)

    def _wait(self, request: Any, context: grpc.ServicerContext, until_started: bool) -> Any:
        remaining = context.time_remaining()
        timeout = None if remaining is None else max(0.0, remaining - 0.05)
        inst = self.engine.wait(request.instanceId, until_started, timeout)
        if inst is None:
            return pb.GetInstanceResponse(exists=False)
        return _instance_response(inst, request.getInputsAndOutputs)

    def WaitForInstanceStart(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._wait(request, context, until_started=True)

    def WaitForInstanceCompletion(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._wait(request, context, until_started=False)

    def RaiseEvent(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            self.engine.raise_event(
                request.instanceId, request.name, request.input.value if request.HasField("input") else None
            )
        except SidecarError as exc:
            _abort(context, exc)
        return pb.RaiseEventResponse()

    def TerminateInstance(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            self.engine.terminate(
                request.instanceId, request.output.value if request.HasField("output") else None, request.recursive
            )
        except SidecarError as exc:
            _abort(context, exc)
        return pb.TerminateResponse()

    def SuspendInstance(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            self.engine.suspend(request.instanceId, request.reason.value if request.HasField("reason") else None)
        except SidecarError as exc:
            _abort(context, exc)
        return pb.SuspendResponse()

    def ResumeInstance(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            self.engine.resume(request.instanceId, request.reason.value if request.HasField("reason") else None)
        except SidecarError as exc:
            _abort(context, exc)
        return pb.ResumeResponse()

    def PurgeInstances(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            if request.WhichOneof("request") == "purgeInstanceFilter":
                flt = request.purgeInstanceFilter
                count = self.engine.purge_matching(
                    flt.createdTimeFrom.ToNanoseconds() / 1e9 if flt.HasField("createdTimeFrom") else None,
                    flt.createdTimeTo.ToNanoseconds() / 1e9 if flt.HasField("createdTimeTo") else None,
                    set(flt.runtimeStatus),
                )
            else:
                count = self.engine.purge(request.instanceId, request.recursive, request.force)
        except SidecarError as exc:
            _abort(context, exc)
        return pb.PurgeInstancesResponse(deletedInstanceCount=count, isComplete=wrappers.BoolValue(value=True))

    def ListInstanceIDs(self, request: Any, context: grpc.ServicerContext) -> Any:
        limit = request.pageSize if request.HasField("pageSize") and request.pageSize > 0 else 1000
        after = request.continuationToken if request.HasField("continuationToken") else ""
        ids, token = self.engine.list_ids(after, limit)
        res = pb.ListInstanceIDsResponse(instanceIds=ids)
        if token is not None:
            res.continuationToken = token
        return res

    def GetInstanceHistory(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.GetInstanceHistoryResponse(events=self.engine.history(request.instanceId))

    def GetWorkItems(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        stream = self.engine.open_stream()
        context.add_callback(lambda: self.engine.close_stream(stream))
        try:
            while context.is_active():
                item = self.engine.next_work_item(stream, timeout=1.0)
                if item is None:
                    if stream.closed or self.engine.stopping:
                        return
                    continue
                yield item
        finally:
            self.engine.close_stream(stream)

    def CompleteActivityTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.engine.complete_activity(request)
        return pb.CompleteTaskResponse()

    def CompleteOrchestratorTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.engine.complete_orchestration(request)
        return pb.CompleteTaskResponse()

    def CompleteWorkflowTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.CompleteOrchestratorTask(request, context)


class DaprRuntime(dapr_grpc.DaprServicer):  # type: ignore[misc]
    """Only ``PublishEvent``; every other Dapr building block answers UNIMPLEMENTED."""

    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub

    def PublishEvent(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not request.pubsub_name or not request.topic:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "pubsub_name and topic are required")
        self.pubsub.publish(request.pubsub_name, request.topic, bytes(request.data), request.data_content_type)
        return empty_pb2.Empty()


__all__ = ["DaprRuntime", "TaskHub", "Timestamp"]
