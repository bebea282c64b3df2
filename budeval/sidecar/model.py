"""The orchestration engine's vocabulary: statuses, the instance and activity records, protobuf helpers, refusals.

Shapes: an :class:`Instance` is one workflow instance (metadata, committed history, undelivered inbox events with
their SQLite ``seq``); an :class:`Activity` is one scheduled activity work item keyed by ``(instance_id, task_id)``.
Timestamps are wall-clock seconds (float) in memory and ``google.protobuf.Timestamp`` on the wire. Protobufs are the
unmodified Dapr SDK's generated Durable Task modules.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb
from google.protobuf import timestamp_pb2, wrappers_pb2

RUNNING = pb.ORCHESTRATION_STATUS_RUNNING
COMPLETED = pb.ORCHESTRATION_STATUS_COMPLETED
CONTINUED_AS_NEW = pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW
FAILED = pb.ORCHESTRATION_STATUS_FAILED
CANCELED = pb.ORCHESTRATION_STATUS_CANCELED
TERMINATED = pb.ORCHESTRATION_STATUS_TERMINATED
PENDING = pb.ORCHESTRATION_STATUS_PENDING
SUSPENDED = pb.ORCHESTRATION_STATUS_SUSPENDED
STALLED = pb.ORCHESTRATION_STATUS_STALLED  # versioning: waits for a worker with the recorded version/patches
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
    app_id: str = ""  # the app whose workers run it (several apps may share one sidecar)
    propagated: bytes | None = None  # the serialized PropagatedHistory it received from its parent, if any
    history: list[Any] = field(default_factory=list)
    inbox: list[tuple[int, Any]] = field(default_factory=list)
    in_flight: str | None = None  # completion token of the dispatched work item
    stream: int | None = None
    delivered: int = 0
    started_event: Any = None
    queued: bool = False
    offloaded: bool = False  # an ended instance's history lives only in SQLite (read on demand)
    stalled_on: set[int] = field(default_factory=set)  # streams that stalled it: its turns go to the others

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def suspended(self) -> bool:
        """Whether the last suspend/resume event (inbox first, then history) suspends it. Kept apart from
        :attr:`status`, which shows STALLED while a suspended instance waits for a worker with its code."""
        for ev in itertools.chain(reversed([ev for _, ev in self.inbox]), reversed(self.history)):
            if ev.HasField("executionSuspended"):
                return True
            if ev.HasField("executionResumed"):
                return False
        return False


@dataclass
class Activity:
    instance_id: str
    task_id: int
    execution_id: str
    request: Any
    token: str
    stream: int | None = None
    app_id: str = ""  # the app whose workers run it (the call's target app, else its workflow's)


def _status_name(status: int) -> str:
    return str(pb.OrchestrationStatus.Name(status)).removeprefix("ORCHESTRATION_STATUS_")
