"""The protobuf modules the sidecar speaks, taken from the installed dapr wheel (the SDK's own copy, never vendored)."""

from __future__ import annotations

from typing import Any

from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as _dt_grpc
from dapr.ext.workflow._durabletask.internal import protos as _dt_protos
from dapr.proto.runtime.v1 import dapr_pb2_grpc as _dapr_grpc
from google.protobuf import empty_pb2 as _empty
from google.protobuf import timestamp_pb2 as _timestamp
from google.protobuf import wrappers_pb2 as _wrappers

# Typed as Any: the generated stubs are partial and strict mypy would drown the logic in casts.
pb: Any = _dt_protos
dt_grpc: Any = _dt_grpc
dapr_grpc: Any = _dapr_grpc
empty_pb2: Any = _empty
wrappers: Any = _wrappers
Timestamp: Any = _timestamp.Timestamp

RUNNING: int = pb.ORCHESTRATION_STATUS_RUNNING
COMPLETED: int = pb.ORCHESTRATION_STATUS_COMPLETED
CONTINUED_AS_NEW: int = pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW
FAILED: int = pb.ORCHESTRATION_STATUS_FAILED
CANCELED: int = pb.ORCHESTRATION_STATUS_CANCELED
TERMINATED: int = pb.ORCHESTRATION_STATUS_TERMINATED
PENDING: int = pb.ORCHESTRATION_STATUS_PENDING
SUSPENDED: int = pb.ORCHESTRATION_STATUS_SUSPENDED
TERMINAL = frozenset({COMPLETED, FAILED, CANCELED, TERMINATED})

#: ``fireAt`` of the optional timer an indefinite ``wait_for_external_event`` schedules: it never fires.
NEVER_SECONDS = 253402300799


def timestamp(seconds: float) -> Any:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def string_value(value: str | None) -> Any:
    return None if value is None else wrappers.StringValue(value=value)
