"""What the activities work with: interfaces only, handed in by whoever assembles the worker (budeval/service)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from budeval.backends.base import JobBackend
from budeval.config import Settings
from budeval.events.publisher import EventPublisher
from budeval.storage.base import Archive, ResultStore
from budeval.workflow.steps import Parser

__all__ = ["Deps", "EventRaiser", "Parser"]

#: ``raise_event(instance_id, event_name, data)``: an external event into a workflow instance (the SDK client's
#: ``raise_workflow_event``); the cancel activity tells the runs' child workflows with it.
EventRaiser = Callable[[str, str, Any], None]


@dataclass
class Deps:
    settings: Settings
    backend: JobBackend
    store: ResultStore
    archive: Archive
    publisher: EventPublisher
    parse: Parser
    suites: Mapping[str, list[str]] = field(default_factory=dict)
    #: Counts activity executions by name: tests and benchmarks prove "exactly once" with it.
    calls: dict[str, int] = field(default_factory=dict)
    #: None: runs are stopped through the backend only (their child workflows see the runs end).
    raise_event: EventRaiser | None = None
