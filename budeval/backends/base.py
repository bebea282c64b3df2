"""The interface between the workflow and a job backend (local process or Kubernetes).

A backend runs one OpenCompass *run* (a rendered config over some datasets) per :class:`RunSpec`, in the work dir
``{results_root}/{eval_id}/{run_id}``, and reports :class:`RunState`. Every method is idempotent: the workflow's
activities may call them again after a crash or retry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from budeval.masking import redact
from budeval.schemas.request import EndpointModel, ModelSpec, Resources

RunPhase = Literal["pending", "running", "succeeded", "failed", "cancelled", "unknown"]
TERMINAL_PHASES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

#: Failure classes reported in ``RunState.reason_class`` and in ``failed`` events.
FailureClass = Literal[
    "oom_killed",
    "image_pull",
    "crash",
    "deadline_exceeded",
    "backoff_limit",
    "task_errors",
    "endpoint_unavailable",
    "no_scores",
    "unschedulable",
    "cancelled",
    "unknown",
]


class RunSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    eval_id: str
    run_id: str
    #: The rendered OpenCompass config (Python source). Holds no secret: API keys are read from the environment.
    config_text: str
    model: ModelSpec
    datasets: list[str]
    resources: Resources = Field(default_factory=Resources)
    timeout_s: int = 6 * 3600
    #: The request's judge model (datasets scored ``judge``), for the key the run carries (:meth:`keyed_source`).
    judge: ModelSpec | None = None

    def keyed_source(self) -> EndpointModel | None:
        """The endpoint whose API key the run needs in ``OPENAI_API_KEY``: the model's, else the judge's (the
        policy allows one credential per run: budeval/policy/credentials.py); None when neither has a key."""
        for spec in (self.model, self.judge):
            if spec is not None and isinstance(spec.source, EndpointModel) and spec.source.api_key_secret:
                return spec.source
        return None


class RunState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    eval_id: str
    run_id: str
    phase: RunPhase
    reason_class: FailureClass | None = None
    message: str = ""
    log_excerpt: str = ""

    @field_validator("message", "log_excerpt")
    @classmethod
    def _masked(cls, value: str) -> str:
        # Every backend's excerpts and messages pass here on their way to events, history and tables.
        return redact(value)

    @property
    def finished(self) -> bool:
        return self.phase in TERMINAL_PHASES


#: Called by a backend's watcher whenever a run reaches a terminal phase (may be called more than once per run).
RunFinishedCallback = Callable[[RunState], None]


class Watch(Protocol):
    def stop(self) -> None: ...


class JobBackend(Protocol):
    name: str

    def submit(self, spec: RunSpec) -> RunState:
        """Start the run, or adopt it if it already exists and is ours; never starts it twice."""
        ...

    def get(self, eval_id: str, run_id: str) -> RunState:
        """Current state; ``unknown`` if the backend has no record of the run."""
        ...

    def cancel(self, eval_id: str) -> None:
        """Stop every run of the evaluation (idempotent)."""
        ...

    def cleanup(self, eval_id: str, run_id: str) -> None:
        """Remove backend objects of a finished run (results stay on the volume)."""
        ...

    def work_dir(self, eval_id: str, run_id: str) -> Path:
        """Where this process can read the run's OpenCompass output."""
        ...

    def watch(self, on_finished: RunFinishedCallback) -> Watch:
        """Start one shared watcher for all runs of this backend."""
        ...
