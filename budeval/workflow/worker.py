"""Wires the workflow and its activities into a Dapr ``WorkflowRuntime`` (talks to daprd or the embedded sidecar)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dapr.ext.workflow as wf

from budeval.workflow import names
from budeval.workflow.activities import Deps, EvalActivities
from budeval.workflow.workflows import evaluation_run_workflow, evaluation_workflow


def _fresh(fn: Callable[[Any, Any], Any], name: str) -> Callable[[Any, Any], Any]:
    # The SDK marks registered callables with attributes, so a function can be registered with one runtime only;
    # a fresh wrapper per runtime lets several runtimes (tests, benchmarks) live in one process.
    def registered(ctx: Any, payload: Any = None) -> Any:
        return fn(ctx, payload)

    registered.__name__ = name
    registered.__qualname__ = name
    return registered


def build_runtime(deps: Deps, **runtime_kwargs: Any) -> tuple[wf.WorkflowRuntime, EvalActivities]:
    """A runtime with both workflows and every activity registered under its stable name (not yet started)."""
    runtime_kwargs.setdefault("maximum_thread_pool_workers", deps.settings.worker_threads)
    runtime = wf.WorkflowRuntime(**runtime_kwargs)
    runtime.register_workflow(_fresh(evaluation_workflow, names.EVALUATION_WORKFLOW), name=names.EVALUATION_WORKFLOW)
    runtime.register_workflow(_fresh(evaluation_run_workflow, names.RUN_WORKFLOW), name=names.RUN_WORKFLOW)
    activities = EvalActivities(deps)
    for name, fn in activities.registry().items():
        runtime.register_activity(_fresh(fn, name), name=name)
    return runtime, activities
