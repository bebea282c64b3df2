"""The evaluation's activities: every side effect of the workflow, each idempotent (it may run more than once).

They depend on interfaces only (``JobBackend``, ``ResultStore``, ``Archive``, ``EventPublisher``) handed in through
:class:`Deps`, so the local process backend and Kubernetes, chDB and a ClickHouse server, a folder and S3 are
interchangeable by configuration. Terminal problems raise :mod:`budeval.errors` terminal errors, which the retry
policy never retries; anything else is retried with backoff.
"""

from __future__ import annotations

import functools
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from budeval import __version__
from budeval.backends.base import JobBackend, RunSpec, RunState
from budeval.config import Settings
from budeval.errors import ValidationError
from budeval.events.cloudevents import make_event
from budeval.events.publisher import EventPublisher
from budeval.logs import get_logger
from budeval.schemas.request import EvalRequest, Resources, Toleration
from budeval.schemas.results import ParsedRun
from budeval.storage.base import Archive, EvaluationRecord, ResultStore
from budeval.workflow import names
from budeval.workflow.faults import maybe_crash
from budeval.workflow.models import (
    Archived,
    ArchiveInput,
    CleanupInput,
    EventInput,
    Extracted,
    ExtractInput,
    FinishInput,
    RenderedRuns,
    Reusable,
    RunPlan,
    Stored,
    ValidatedRequest,
)

Parser = Callable[[Path], ParsedRun]


@dataclass
class Deps:
    settings: Settings
    backend: JobBackend
    store: ResultStore
    archive: Archive
    publisher: EventPublisher
    parse: Parser
    suites: dict[str, list[str]] = field(default_factory=dict)
    #: Counts activity executions by name: tests and benchmarks prove "exactly once" with it.
    calls: dict[str, int] = field(default_factory=dict)


@functools.cache
def _git_commit() -> str:
    """budeval's commit for provenance; asked once, on first use (not at import: the service starts faster)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except OSError:
        return ""


def with_cluster_defaults(resources: Resources, settings: Settings) -> Resources:
    """Fill what the request left unset from the installation's defaults (the chart's runner values)."""
    given = resources.model_fields_set
    update: dict[str, Any] = {}
    if "gpu_resource_name" not in given:
        update["gpu_resource_name"] = settings.default_gpu_resource_name
    if not resources.node_selector and settings.default_node_selector:
        update["node_selector"] = dict(settings.default_node_selector)
    if not resources.tolerations and settings.default_tolerations:
        update["tolerations"] = [Toleration.model_validate(t) for t in settings.default_tolerations]
    if resources.queue is None and settings.default_queue:
        update["queue"] = settings.default_queue
    if resources.priority_class is None and settings.default_priority_class:
        update["priority_class"] = settings.default_priority_class
    return resources.model_copy(update=update) if update else resources


def plan_runs(request: EvalRequest, datasets: list[str]) -> list[RunPlan]:
    """One run per dataset (isolated failures, parallel) or one run for all; run ids are short and stable."""
    if request.split == "single":
        return [RunPlan(run_id="r0", datasets=datasets)]
    return [RunPlan(run_id=f"r{i}", datasets=[name]) for i, name in enumerate(datasets)]


class EvalActivities:
    """Bound to one :class:`Deps`; ``registry()`` gives the name -> function map the worker registers."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._store_lock = threading.Lock()  # chDB is one session per process: serialise store access
        self._count_lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _count(self, name: str) -> None:
        maybe_crash(name)
        with self._count_lock:
            self.deps.calls[name] = self.deps.calls.get(name, 0) + 1

    def registry(self) -> dict[str, Callable[..., Any]]:
        return {
            names.VALIDATE: self.validate_request,
            names.DEDUPE: self.find_reusable,
            names.BEGIN: self.begin_evaluation,
            names.RENDER: self.render_runs,
            names.SUBMIT: self.submit_run,
            names.CHECK: self.check_run,
            names.EXTRACT: self.extract_run,
            names.STORE: self.store_run,
            names.ARCHIVE: self.archive_evaluation,
            names.FINISH: self.finish_evaluation,
            names.PUBLISH: self.publish_event,
            names.CLEANUP: self.cleanup_runs,
        }

    # -- activities ------------------------------------------------------------------------------------------------
    def validate_request(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        self._count(names.VALIDATE)
        from budeval.engine.catalog import resolve_datasets

        try:
            request = EvalRequest.model_validate(payload)
        except Exception as exc:
            raise ValidationError(str(exc)) from None
        datasets = resolve_datasets(request, self.deps.suites)
        engine = self.deps.settings.engine_version
        return ValidatedRequest(
            request=request,
            params_hash=request.params_hash(engine),
            engine_version=engine,
            runs=plan_runs(request, datasets),
        ).model_dump(mode="json")

    def find_reusable(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        self._count(names.DEDUPE)
        validated = ValidatedRequest.model_validate(payload)
        with self._store_lock:
            found = self.deps.store.find_reusable(validated.params_hash)
            if found is None or found.eval_id == validated.request.eval_id:
                return Reusable(found=False).model_dump(mode="json")
            scores = [s.model_dump(mode="json") for s in self.deps.store.results(found.eval_id)]
        return Reusable(
            found=True, reused_from=found.eval_id, archive_url=found.archive_url, scores=scores
        ).model_dump(mode="json")

    def begin_evaluation(self, ctx: Any, payload: dict[str, Any]) -> None:
        self._count(names.BEGIN)
        validated = ValidatedRequest.model_validate(payload)
        record = self._record(validated, "running")
        record.created_at = datetime.now(UTC)
        with self._store_lock:
            existing = self.deps.store.get_evaluation(record.eval_id)
            if existing is not None and existing.created_at is not None:
                record.created_at = existing.created_at  # a re-run activity keeps the first start time
            self.deps.store.record_evaluation(record)

    def render_runs(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        self._count(names.RENDER)
        from budeval.engine.render import config_hash, render_config

        validated = ValidatedRequest.model_validate(payload)
        request = validated.request
        by_name = {d if isinstance(d, str) else d.name: d for d in (request.datasets or [])}
        specs: list[RunSpec] = []
        hashes: dict[str, str] = {}
        for plan in validated.runs:
            refs = [by_name.get(name, name) for name in plan.datasets]
            text = render_config(request, refs)
            hashes[plan.run_id] = config_hash(text)
            specs.append(
                RunSpec(
                    eval_id=request.eval_id,
                    run_id=plan.run_id,
                    config_text=text,
                    model=request.model,
                    datasets=plan.datasets,
                    resources=with_cluster_defaults(request.resources, self.deps.settings),
                    timeout_s=request.timeout_s,
                )
            )
        return RenderedRuns(specs=specs, config_hashes=hashes).model_dump(mode="json")

    def submit_run(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        self._count(names.SUBMIT)
        spec = RunSpec.model_validate(payload)
        state = self.deps.backend.submit(spec)
        get_logger(eval_id=spec.eval_id, run_id=spec.run_id).info("run submitted", phase=state.phase)
        maybe_crash(names.SUBMIT, "after")
        return state.model_dump(mode="json")

    def check_run(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        self._count(names.CHECK)
        spec = RunSpec.model_validate(payload)
        state: RunState = self.deps.backend.get(spec.eval_id, spec.run_id)
        if state.phase == "unknown":
            # The backend lost the run (e.g. deleted by hand): re-submitting is safe, submit never runs it twice.
            state = self.deps.backend.submit(spec)
        return state.model_dump(mode="json")

    def extract_run(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        self._count(names.EXTRACT)
        where = ExtractInput.model_validate(payload)
        parsed = self.deps.parse(self.deps.backend.work_dir(where.eval_id, where.run_id))
        return Extracted(
            metrics=parsed.metrics,
            statuses=parsed.statuses,
            timestamp=parsed.facts.timestamp,
            opencompass_version=parsed.facts.opencompass_version,
        ).model_dump(mode="json")

    def store_run(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        self._count(names.STORE)
        where = ExtractInput.model_validate(payload)
        parsed = self.deps.parse(self.deps.backend.work_dir(where.eval_id, where.run_id))
        with self._store_lock:
            report = self.deps.store.store_run(where.eval_id, where.run_id, parsed)
        maybe_crash(names.STORE, "after")
        get_logger(eval_id=where.eval_id, run_id=where.run_id).info(
            "run stored", metrics=report.metrics, predictions=report.predictions
        )
        return Stored(metrics=report.metrics, predictions=report.predictions).model_dump(mode="json")

    def archive_evaluation(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        self._count(names.ARCHIVE)
        inp = ArchiveInput.model_validate(payload)
        source = self.deps.settings.resolved_results_root() / inp.eval_id
        if not source.is_dir():
            return Archived(url=None, error=f"no results folder for {inp.eval_id}").model_dump(mode="json")
        receipt = self.deps.archive.upload_run(source, inp.eval_id, self._provenance(inp.provenance))
        return Archived(
            url=receipt.url, files=receipt.files, uploaded=receipt.uploaded, skipped=receipt.skipped
        ).model_dump(mode="json")

    def finish_evaluation(self, ctx: Any, payload: dict[str, Any]) -> None:
        self._count(names.FINISH)
        inp = FinishInput.model_validate(payload)
        record = self._record(inp.validated, inp.outcome)
        record.reused_from = inp.reused_from
        record.reason = inp.reason
        record.archive_url = inp.archive_url
        record.created_at = datetime.fromisoformat(inp.started_at)
        record.finished_at = datetime.fromisoformat(inp.finished_at)
        versions = {f"{m.dataset}": m.version for o in inp.runs for m in o.metrics if m.version and m.version != "-"}
        record.provenance = record.provenance | self._provenance(
            {
                "params_hash": inp.validated.params_hash,
                "config_hashes": inp.config_hashes,
                "dataset_versions": versions,
                "runs": [
                    {"run_id": o.run_id, "datasets": o.datasets, "phase": o.state.phase, "predictions": o.predictions}
                    for o in inp.runs
                ],
                "started_at": inp.started_at,
                "finished_at": inp.finished_at,
            }
        )
        with self._store_lock:
            self.deps.store.record_evaluation(record)

    def publish_event(self, ctx: Any, payload: dict[str, Any]) -> None:
        self._count(names.PUBLISH)
        inp = EventInput.model_validate(payload)
        maybe_crash(f"{names.PUBLISH}.{inp.kind}")
        event = make_event(inp.kind, inp.event_id, inp.eval_id, inp.data)
        self.deps.publisher.publish(self.deps.settings.events_topic, event)
        maybe_crash(f"{names.PUBLISH}.{inp.kind}", "after")
        get_logger(eval_id=inp.eval_id).info("event published", kind=inp.kind, event_id=inp.event_id)

    def cleanup_runs(self, ctx: Any, payload: dict[str, Any]) -> None:
        self._count(names.CLEANUP)
        inp = CleanupInput.model_validate(payload)
        for run_id in inp.run_ids:
            self.deps.backend.cleanup(inp.eval_id, run_id)

    # -- records ---------------------------------------------------------------------------------------------------
    def _record(self, validated: ValidatedRequest, status: Any) -> EvaluationRecord:
        request = validated.request
        source = request.model.source
        if source.type == "huggingface":
            model_source, revision = source.path, source.revision or ""
        else:
            model_source, revision = f"{source.base_url}#{source.model}", ""
        return EvaluationRecord(
            eval_id=request.eval_id,
            experiment_id=request.experiment_id,
            status=status,
            params_hash=validated.params_hash,
            model_name=request.model.name,
            model_source=model_source,
            model_revision=revision,
            datasets=[d for run in validated.runs for d in run.datasets],
            labels=dict(request.labels),
            provenance=self._provenance(
                {
                    "generation": request.generation.model_dump(mode="json"),
                    "model": source.model_dump(mode="json"),
                }
            ),
        )

    def _provenance(self, extra: dict[str, Any]) -> dict[str, Any]:
        settings = self.deps.settings
        base: dict[str, Any] = {
            "budeval_version": __version__,
            "budeval_commit": _git_commit(),
            "engine": "opencompass",
            "engine_version": settings.engine_version,
            "backend": settings.backend,
            "image": settings.runner_image if settings.backend == "kubernetes" else "local-venv",
        }
        return {**base, **extra}
