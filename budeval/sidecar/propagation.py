"""Workflow history propagation (``PropagationScope.OWN_HISTORY`` / ``LINEAGE`` in the SDK), as daprd assembles it.

A workflow that schedules an activity or a child workflow with a propagation scope hands it a
``PropagatedHistory``: one chunk per workflow, oldest ancestor first. The caller's own chunk holds its history up to
and including the scheduling event (each event serialized deterministically, ``appId`` = the caller's app, its
instance id and workflow name); with ``LINEAGE`` the chunks the caller itself received come first. The activity gets
it in ``ActivityRequest.propagatedHistory``; a child workflow keeps it for its whole life (every work item carries
it in ``WorkflowRequest.propagatedHistory``), and a child that continues as new passes its own history on under the
scope it received. No chunk is signed (daprd signs with its SPIFFE identity when mTLS is on; there is none here).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb

NONE = pb.HISTORY_PROPAGATION_SCOPE_NONE
LINEAGE = pb.HISTORY_PROPAGATION_SCOPE_LINEAGE


def assemble(scope: int, received: bytes | None, app_id: str, instance_id: str, workflow_name: str,
             events: Iterable[Any]) -> Any:
    """The ``PropagatedHistory`` for ``scope`` (None for ``NONE``); ``received`` is the caller's own propagated
    history (serialized, or None for a root workflow), ``events`` its history so far."""
    if scope == NONE:
        return None
    chunks: list[Any] = []
    if scope == LINEAGE and received:
        chunks.extend(pb.PropagatedHistory.FromString(received).chunks)
    raw = [ev.SerializeToString(deterministic=True) for ev in events]
    if raw:
        chunks.append(pb.PropagatedHistoryChunk(appId=app_id, instanceId=instance_id, workflowName=workflow_name,
                                                rawEvents=raw))
    return pb.PropagatedHistory(scope=scope, chunks=chunks)


def received_scope(received: bytes | None) -> int:
    """The scope of a propagated history a workflow received (``NONE`` for none): what it forwards on
    continue-as-new."""
    return int(pb.PropagatedHistory.FromString(received).scope) if received else int(NONE)
