"""gRPC servicers: Durable Task's ``TaskHubSidecarService`` over the engine, and Dapr's ``PublishEvent``.

Only translation lives here (protobuf in, engine call, protobuf out, engine refusals as gRPC status codes); the
semantics are in :mod:`budeval.sidecar.orchestration` and :mod:`budeval.sidecar.topics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs
from dapr.ext.workflow._durabletask.internal import protos as pb
from dapr.proto.runtime.v1 import pubsub_pb2
from google.protobuf import empty_pb2

from budeval.sidecar.orchestration import PENDING, TERMINAL, Engine, EngineError, Instance, _seconds
from budeval.sidecar.topics import Broker

_CODES = {name: getattr(grpc.StatusCode, name) for name in ("ALREADY_EXISTS", "NOT_FOUND", "FAILED_PRECONDITION")}


def _value(message: Any, name: str) -> str | None:
    return str(getattr(message, name).value) if message.HasField(name) else None


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: Any, request: Any, context: Any) -> Any:
        try:
            return fn(self, request, context)
        except EngineError as exc:
            context.abort(_CODES.get(exc.code, grpc.StatusCode.UNKNOWN), str(exc))

    call.__name__ = fn.__name__
    return call


class TaskHub(stubs.TaskHubSidecarServiceServicer):  # type: ignore[misc]
    """The RPCs the Dapr workflow worker and client call; anything else answers UNIMPLEMENTED."""

    def __init__(self, engine: Engine, app_id: str | None = None) -> None:
        self.engine = engine
        #: The app this endpoint serves: its workers' streams get that app's work items; instances started here
        #: belong to it (unless the request's router names another app this sidecar serves).
        self.app_id = app_id or engine.app_id

    def Hello(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()

    def GetWorkItems(self, request: Any, context: Any) -> Iterator[Any]:
        context.add_callback(self.engine.wake_streams)
        yield from self.engine.stream(context.is_active, self.app_id)

    def CompleteOrchestratorTask(self, request: Any, context: Any) -> Any:
        self.engine.complete_orchestration(request)
        return pb.CompleteTaskResponse()

    CompleteWorkflowTask = CompleteOrchestratorTask

    def CompleteActivityTask(self, request: Any, context: Any) -> Any:
        self.engine.complete_activity(request)
        return pb.CompleteTaskResponse()

    @_guard
    def StartInstance(self, request: Any, context: Any) -> Any:
        start_at = _seconds(request.scheduledStartTimestamp) if request.HasField("scheduledStartTimestamp") else None
        target = request.router.targetAppID if request.HasField("router") and request.router.targetAppID else None
        iid = self.engine.start_instance(request.instanceId, request.name, _value(request, "input"), start_at,
                                         target or self.app_id)
        return pb.CreateInstanceResponse(instanceId=iid)

    def GetInstance(self, request: Any, context: Any) -> Any:
        return self.engine.state(request.instanceId, request.getInputsAndOutputs)

    def WaitForInstanceStart(self, request: Any, context: Any) -> Any:
        return self._wait(request, context, lambda inst: inst.status != PENDING)

    def WaitForInstanceCompletion(self, request: Any, context: Any) -> Any:
        return self._wait(request, context, lambda inst: inst.status in TERMINAL)

    def _wait(self, request: Any, context: Any, until: Callable[[Instance], bool]) -> Any:
        answer = self.engine.wait(request.instanceId, request.getInputsAndOutputs, until, context.time_remaining(),
                                  context.is_active)
        if answer is None:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"timed out waiting for '{request.instanceId}'")
        return answer

    @_guard
    def RaiseEvent(self, request: Any, context: Any) -> Any:
        self.engine.raise_event(request.instanceId, request.name, _value(request, "input"))
        return pb.RaiseEventResponse()

    @_guard
    def TerminateInstance(self, request: Any, context: Any) -> Any:
        self.engine.terminate(request.instanceId, _value(request, "output"), request.recursive)
        return pb.TerminateResponse()

    @_guard
    def SuspendInstance(self, request: Any, context: Any) -> Any:
        self.engine.suspend(request.instanceId, _value(request, "reason"))
        return pb.SuspendResponse()

    @_guard
    def ResumeInstance(self, request: Any, context: Any) -> Any:
        self.engine.resume(request.instanceId, _value(request, "reason"))
        return pb.ResumeResponse()

    @_guard
    def PurgeInstances(self, request: Any, context: Any) -> Any:
        force = request.force if request.HasField("force") else False
        if request.WhichOneof("request") == "purgeInstanceFilter":
            flt = request.purgeInstanceFilter
            count = self.engine.purge(
                None, request.recursive, force,
                created_from=_seconds(flt.createdTimeFrom) if flt.HasField("createdTimeFrom") else None,
                created_to=_seconds(flt.createdTimeTo) if flt.HasField("createdTimeTo") else None,
                statuses=frozenset(flt.runtimeStatus),
            )
        else:
            count = self.engine.purge(request.instanceId, request.recursive, force)
        return pb.PurgeInstancesResponse(deletedInstanceCount=count)

    def ListInstanceIDs(self, request: Any, context: Any) -> Any:
        after = request.continuationToken if request.HasField("continuationToken") else None
        size = request.pageSize if request.HasField("pageSize") else 0
        ids, token = self.engine.list_ids(after or None, size)
        answer = pb.ListInstanceIDsResponse(instanceIds=ids)
        if token is not None:
            answer.continuationToken = token
        return answer

    @_guard
    def GetInstanceHistory(self, request: Any, context: Any) -> Any:
        return pb.GetInstanceHistoryResponse(events=self.engine.history(request.instanceId))


def dapr_handler(broker: Broker) -> grpc.GenericRpcHandler:
    """``dapr.proto.runtime.v1.Dapr`` with only ``PublishEvent``; every other Dapr RPC answers UNIMPLEMENTED."""

    def publish(request: Any, context: Any) -> Any:
        try:
            broker.publish(request.pubsub_name, request.topic, bytes(request.data), request.data_content_type)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return empty_pb2.Empty()

    handler = grpc.unary_unary_rpc_method_handler(
        publish,
        request_deserializer=pubsub_pb2.PublishEventRequest.FromString,
        response_serializer=empty_pb2.Empty.SerializeToString,
    )
    return grpc.method_handlers_generic_handler("dapr.proto.runtime.v1.Dapr", {"PublishEvent": handler})
