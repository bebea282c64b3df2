"""Workflow versioning as daprd's durable-task backend does it: what a worker reports, what the history records, and
when an instance stalls.

The SDK answers every orchestration work item with ``WorkflowResponse.version``: ``name`` = the version of a
versioned registration (``register_versioned_workflow`` / ``@versioned_workflow``) it ran, ``patches`` = every
``is_patched(...)`` call that answered True in this replay, in call order (repeats included). The sidecar records
that on the turn's ``WorkflowStarted`` event, the patches compacted to those not recorded before (a multiset
difference), so the concatenation of the recorded patches over the history is the ordered list of patches the
instance has taken. On replay the SDK reads them back: the first ``WorkflowStarted`` names the version to run (so a
running instance keeps its version when a newer one is registered) and ``is_patched`` answers True for a recorded
patch even while replaying.

An instance **stalls** (status ``STALLED``, an ``ExecutionStalled`` event in its history, the turn's events kept for
later) when the worker cannot run it as recorded:

* ``VERSION_NOT_AVAILABLE``: the worker answers ``workflowVersionNotAvailable`` (its registry lacks the recorded
  version);
* ``PATCH_MISMATCH``: the patches recorded in the history are not a prefix of the patches the worker reports (its
  code lacks a patch the instance already took, or takes them in another order).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb

VERSION_NOT_AVAILABLE = pb.VERSION_NOT_AVAILABLE
PATCH_MISMATCH = pb.PATCH_MISMATCH


def recorded_patches(history: Iterable[Any]) -> list[str]:
    """The patches recorded in ``history`` (``HistoryEvent`` list), in the order the instance took them."""
    return [p for ev in history if ev.HasField("workflowStarted") for p in ev.workflowStarted.version.patches]


def recorded_version(history: Iterable[Any]) -> str:
    """The version name the first ``WorkflowStarted`` of ``history`` records ("" for none)."""
    for ev in history:
        if ev.HasField("workflowStarted"):
            return str(ev.workflowStarted.version.name)
    return ""


def reported_patches(res: Any) -> list[str]:
    """The patches a ``WorkflowResponse`` reports (none when it carries no version)."""
    return list(res.version.patches) if res.HasField("version") else []


def stall_reason(history: list[Any], res: Any) -> tuple[int, str] | None:
    """``(StalledReason, description)`` when the worker's answer ``res`` cannot be applied to ``history``; else None."""
    if any(a.WhichOneof("workflowActionType") == "workflowVersionNotAvailable" for a in res.actions):
        return VERSION_NOT_AVAILABLE, f"Version not available: {recorded_version(history)}"
    recorded = recorded_patches(history)
    current = reported_patches(res)
    if recorded and current[: len(recorded)] != recorded:
        return PATCH_MISMATCH, (f"Patch mismatch. History patches: [{', '.join(recorded)}], "
                                f"current patches: [{', '.join(current)}].")
    return None


def version_to_record(history: list[Any], res: Any) -> Any:
    """The ``WorkflowVersion`` to put on this turn's ``WorkflowStarted`` (None: nothing to record).

    The name is kept on every turn; the patches are those reported minus those already recorded (as a multiset),
    so recorded patches concatenated over the history stay equal to the worker's list.
    """
    if not res.HasField("version"):
        return None
    left = Counter(recorded_patches(history))
    new: list[str] = []
    for patch in res.version.patches:
        if left[patch] > 0:
            left[patch] -= 1
        else:
            new.append(patch)
    if not res.version.name and not new:
        return None
    return pb.WorkflowVersion(name=res.version.name, patches=new)
