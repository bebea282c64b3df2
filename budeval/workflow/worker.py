"""Wires the workflow and its activities into a Dapr ``WorkflowRuntime`` (talks to daprd or the embedded sidecar).

Both workflows are *versioned registrations* (Dapr workflow versioning): the sidecar records in each instance's history
the version it started on, and a worker replays it on that version, so an upgrade that changes a workflow's steps
does not need draining. How to change a workflow safely: docs/workflow.md, "Changing the workflow".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import dapr.ext.workflow as wf

from budeval.logs import bind_ids, sdk_logger_options
from budeval.workflow import names
from budeval.workflow.activities import Deps, EvalActivities
from budeval.workflow.workflows import evaluation_run_workflow, evaluation_workflow

Workflow = Callable[[Any, Any], Any]

#: Every version of each workflow this build can run: ``{workflow name: {version name: function}}``, oldest first;
#: the last version is the latest (new instances start on it). Keep a version while instances started on it may be
#: running (in flight across the upgrade); a change to the steps adds a version (or an ``is_patched`` branch).
WORKFLOW_VERSIONS: Mapping[str, Mapping[str, Workflow]] = {
    names.EVALUATION_WORKFLOW: {names.VERSION_1: evaluation_workflow},
    names.RUN_WORKFLOW: {names.VERSION_1: evaluation_run_workflow},
}


def _fresh(fn: Callable[[Any, Any], Any], name: str) -> Callable[[Any, Any], Any]:
    # The SDK marks registered callables with attributes, so a function can be registered with one runtime only;
    # a fresh wrapper per runtime lets several runtimes (tests, benchmarks) live in one process.
    def registered(ctx: Any, payload: Any = None) -> Any:
        return fn(ctx, payload)

    registered.__name__ = name
    registered.__qualname__ = name
    return registered


def _ids(payload: Any) -> dict[str, Any]:
    """``eval_id`` and ``run_id`` of an activity's input (top level or one level down: ``spec``, ``request``)."""
    found: dict[str, Any] = {}
    if not isinstance(payload, dict):
        return found
    for part in (payload, *(v for v in payload.values() if isinstance(v, dict))):
        for key in ("eval_id", "run_id"):
            if isinstance(part.get(key), str):
                found.setdefault(key, part[key])
    return found


def _bound(fn: Callable[[Any, Any], Any], name: str) -> Callable[[Any, Any], Any]:
    """An activity whose every log line (budeval's and the libraries') carries its ``eval_id`` / ``run_id``."""

    def activity(ctx: Any, payload: Any = None) -> Any:
        with bind_ids(**_ids(payload)):
            return fn(ctx, payload)

    return _fresh(activity, name)


def register_workflows(runtime: wf.WorkflowRuntime,
                       versions: Mapping[str, Mapping[str, Workflow]] = WORKFLOW_VERSIONS) -> None:
    """Register every version of every workflow in ``versions`` (the last version of each is the latest).

    Raises ValueError for a workflow without any version.
    """
    for name, by_version in versions.items():
        if not by_version:
            raise ValueError(f"workflow {name!r} has no version to register")
        latest = list(by_version)[-1]
        for version, fn in by_version.items():
            runtime.register_versioned_workflow(_fresh(fn, f"{name}_v{version}"), name=name, version_name=version,
                                                is_latest=version == latest)


def build_runtime(deps: Deps, versions: Mapping[str, Mapping[str, Workflow]] = WORKFLOW_VERSIONS,
                  **runtime_kwargs: Any) -> tuple[wf.WorkflowRuntime, EvalActivities]:
    """A runtime with every version of both workflows (``versions``) and every activity registered under its stable
    name (not yet started)."""
    runtime_kwargs.setdefault("maximum_thread_pool_workers", deps.settings.worker_threads)
    runtime_kwargs.setdefault("logger_options", sdk_logger_options())  # its lines once, as JSON (budeval/logs.py)
    runtime = wf.WorkflowRuntime(**runtime_kwargs)
    register_workflows(runtime, versions)
    activities = EvalActivities(deps)
    for name, fn in activities.registry().items():
        runtime.register_activity(_bound(fn, name), name=name)
    return runtime, activities
