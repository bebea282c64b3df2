"""The evaluation's activities: every side effect of the workflow, each idempotent (it may run more than once).

They depend on interfaces only (``JobBackend``, ``ResultStore``, ``Archive``, ``EventPublisher``) handed in through
:class:`Deps`, so the local process backend and Kubernetes, chDB and a ClickHouse server, a folder and S3 are
interchangeable by configuration. Terminal problems raise :mod:`budeval.errors` terminal errors, which the retry
policy never retries; anything else is retried with backoff.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from budeval.backends.base import RunSpec, RunState
from budeval.config import Settings
from budeval.errors import TerminalError, ValidationError
from budeval.events.cloudevents import make_event
from budeval.logs import get_logger
from budeval.schemas.request import EvalRequest, Resources, Toleration
from budeval.schemas.results import ParsedRun
from budeval.storage.base import EvaluationRecord
from budeval.workflow import names, provenance, steps
from budeval.workflow.deps import Deps, Parser
from budeval.workflow.faults import maybe_crash, maybe_delay
from budeval.workflow.models import (
    CheckInput,
    CollectInput,
    EventInput,
    ExtractInput,
    GateInput,
    Prepared,
    PrepareInput,
    RenderedRuns,
    Reusable,
    RunPlan,
    Stored,
    ValidatedRequest,
)
from budeval.workflow.outcomes import OutcomeSteps

__all__ = ["Deps", "EvalActivities", "Parser", "plan_runs", "render_plans", "with_cluster_defaults"]


def with_cluster_defaults(resources: Resources, settings: Settings, *, endpoint: bool = False) -> Resources:
    """Fill what the request left unset from the installation's defaults (the chart's runner values); an
    ``endpoint`` model's run (no weights, no GPU unless asked) gets ``endpoint_default_cpu``/``_memory``."""
    given = resources.model_fields_set
    update: dict[str, Any] = {}
    if endpoint and resources.cpu is None and settings.endpoint_default_cpu:
        update["cpu"] = settings.endpoint_default_cpu
    if endpoint and resources.memory is None and settings.endpoint_default_memory:
        update["memory"] = settings.endpoint_default_memory
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


def render_plans(
    request: EvalRequest,
    runs: list[RunPlan],
    settings: Settings,
    replay: Callable[[list[str]], dict[str, list[str]]] | None = None,
) -> RenderedRuns:
    """One rendered OpenCompass config (and its sha256) per planned run: what ``render_runs`` and ``budeval plan``
    show. ``replay``: a re-judging request's stored predictions of a run's datasets (see ``render_config``).
    Raises ``ValidationError`` for what the renderer refuses (a re-judging request without ``replay`` included)."""
    from budeval.engine.render import config_hash, render_config

    by_name = {d if isinstance(d, str) else d.name: d for d in (request.datasets or [])}
    specs: list[RunSpec] = []
    hashes: dict[str, str] = {}
    for plan in runs:
        refs = [by_name.get(name, name) for name in plan.datasets]
        answers = replay(plan.datasets) if replay is not None and request.rejudge_of is not None else None
        text = render_config(request, refs, settings, replay=answers)
        hashes[plan.run_id] = config_hash(text)
        specs.append(
            RunSpec(
                eval_id=request.eval_id,
                run_id=plan.run_id,
                config_text=text,
                model=request.model,
                judge=request.judge.model if request.judge is not None else None,
                datasets=plan.datasets,
                resources=with_cluster_defaults(
                    request.resources, settings, endpoint=not request.loads_weights()
                ),
                timeout_s=request.timeout_s,
            )
        )
    return RenderedRuns(specs=specs, config_hashes=hashes)


class EvalActivities(OutcomeSteps):
    """Bound to one :class:`Deps`; ``registry()`` gives the name -> function map the worker registers.

    The activities are coarse on purpose: every activity costs the sidecar a work item, a completion and a replay of
    the workflow's history, which dominated the time of a small evaluation (measured: 13 activities and ~29 work items
    per evaluation bounded the embedded stack at ~6 evaluations/s). So each activity runs several *steps* in order
    -- the methods named after the steps below -- and every step is idempotent, which makes re-running the whole
    activity after a crash or a transient failure safe. Steps keep their own names for logs, ``Deps.calls`` and the
    crash points of ``faults.py``.
    """

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._count_lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _count(self, name: str) -> None:
        maybe_crash(name)
        maybe_delay(name)
        with self._count_lock:
            self.deps.calls[name] = self.deps.calls.get(name, 0) + 1

    def registry(self) -> dict[str, Callable[..., Any]]:
        return {
            names.PREPARE: self.prepare_evaluation,
            names.SUBMIT: self.submit_run,
            names.CHECK: self.check_run,
            names.COLLECT: self.collect_run,
            names.FINALIZE: self.finalize_evaluation,
            names.PUBLISH: self.publish_event,
            names.GATE: self.run_gate,
            names.STOP_RUNS: self.stop_runs,
            names.CANCEL: self.cancel_evaluation,
        }

    # -- activities ------------------------------------------------------------------------------------------------
    def prepare_evaluation(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        """validate -> dedupe (unless ``force``) -> render -> begin (row ``running``) -> ``started`` event."""
        inp = PrepareInput.model_validate(payload)
        try:
            validated = self.validate_request(inp.request)
        except TerminalError as exc:
            return Prepared(rejected=str(exc)).model_dump(mode="json")
        if inp.attempt > 1:
            self.supersede_attempt(validated.request.eval_id, inp.attempt)
        if not validated.request.force:
            reusable = self.find_reusable(validated)
            if reusable.found:
                return Prepared(validated=validated, reusable=reusable).model_dump(mode="json")
        render_error: str | None = None
        try:
            rendered = self.render_runs(validated)
        except Exception as exc:  # rendering is pure: retrying cannot help, so any failure is the evaluation's
            rendered, render_error = RenderedRuns(specs=[], config_hashes={}), f"render failed: {exc}"
        self.begin_evaluation(validated, datetime.fromisoformat(inp.started_at), inp.attempt)
        eval_id = validated.request.eval_id
        started = {"status": "running", "runs": [r.model_dump(mode="json") for r in validated.runs]}
        started_id = names.event_id(eval_id, "started", inp.attempt)
        self._publish(EventInput(eval_id=eval_id, kind="started", event_id=started_id, data=started))
        return Prepared(validated=validated, rendered=rendered, render_error=render_error).model_dump(mode="json")

    def submit_run(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        self._count(names.SUBMIT)
        spec = RunSpec.model_validate(payload)
        state = self.deps.backend.submit(spec)
        get_logger(eval_id=spec.eval_id, run_id=spec.run_id).info("run submitted", phase=state.phase)
        maybe_crash(names.SUBMIT, "after")
        return state.model_dump(mode="json")

    def check_run(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        """The run's state (``CheckInput``: a reference). ``unknown`` -- the backend lost the run, e.g. deleted by
        hand -- is returned as is: the workflow submits the run again (submit never runs it twice)."""
        self._count(names.CHECK)
        ref = CheckInput.model_validate(payload)
        state: RunState = self.deps.backend.get(ref.eval_id, ref.run_id)
        return state.model_dump(mode="json")

    def collect_run(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        """extract -> store -> ``progress``: the run's files parsed once, its rows stored (a previous copy
        replaced), its end announced."""
        where = CollectInput.model_validate(payload)
        self._count(names.EXTRACT)
        work = self.deps.backend.work_dir(where.eval_id, where.run_id)
        parsed = steps.extract_run(self.deps.parse, work)  # a broken run fails here, without touching the store
        got = steps.collected(parsed, self.store_run(where, parsed), work)
        progress = got.outcome(where).progress()
        progress_id = names.event_id(where.eval_id, "progress", where.attempt, where.run_id)
        self._publish(EventInput(eval_id=where.eval_id, kind="progress", event_id=progress_id, data=progress))
        return got.model_dump(mode="json")

    def publish_event(self, ctx: Any, payload: dict[str, Any]) -> None:
        self._publish(EventInput.model_validate(payload))

    def run_gate(self, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        """The request's regression gate against the finished evaluation, then its event (id ``<eval>.gate``):
        ``gate.passed`` (no-difference or improvement), ``gate.failed`` (regression) or ``gate.inconclusive``
        (inconclusive, or a gate that could not compare: refused, unknown baseline; ``error`` says why). A store
        outage raises (retried by the workflow's policy). Returns the event's data."""
        from budeval.decisions.gate import GateOptions, evaluate_gate  # the decisions layer, below the workflow
        from budeval.errors import GateRefusedError, NotFoundError

        inp = GateInput.model_validate(payload)
        self._count(names.GATE)
        spec = dict(inp.spec)
        baseline = str(spec.pop("baseline"))
        data: dict[str, Any]
        store: Any = self.deps.store  # the ClickHouse store: a ResultStore with the decision reads
        try:
            report = evaluate_gate(store, baseline, inp.eval_id, GateOptions.model_validate(spec))
        except (GateRefusedError, NotFoundError, ValidationError) as exc:
            data = {"status": "inconclusive", "baseline": baseline, "candidate": inp.eval_id, "error": exc.reason,
                    "message": exc.message, "overlap": getattr(exc, "overlap", None)}
            kind = "gate.inconclusive"
        else:
            data = {"status": report.verdict, **report.model_dump(mode="json")}
            kind = {"regression": "gate.failed", "inconclusive": "gate.inconclusive"}.get(report.verdict, "gate.passed")
        event = EventInput(eval_id=inp.eval_id, kind=kind, event_id=f"{inp.eval_id}.gate", data=data)  # type: ignore[arg-type]
        self._publish(event)
        return {"kind": kind, **data}

    # -- steps -----------------------------------------------------------------------------------------------------
    def validate_request(self, payload: dict[str, Any]) -> ValidatedRequest:
        self._count(names.VALIDATE)
        from budeval.engine.catalog import resolve_datasets
        from budeval.engine.identity import compute_identity

        try:
            request = EvalRequest.model_validate(payload)
        except Exception as exc:
            raise ValidationError(str(exc)) from None
        datasets = resolve_datasets(request, self.deps.suites)
        identity = compute_identity(request, self.deps.suites, self.deps.settings)
        return ValidatedRequest(
            request=request,
            params_hash=identity.hash or "",
            engine_version=self.deps.settings.engine_version,
            runs=plan_runs(request, datasets),
            identity=identity.model_dump(mode="json"),
        )

    def find_reusable(self, validated: ValidatedRequest) -> Reusable:
        self._count(names.DEDUPE)
        found = self.deps.store.find_reusable(validated.params_hash)
        if found is None or found.eval_id == validated.request.eval_id:
            return Reusable(found=False)
        scores = [s.model_dump(mode="json") for s in self.deps.store.results(found.eval_id)]
        return Reusable(found=True, reused_from=found.eval_id, archive_url=found.archive_url, scores=scores)

    def render_runs(self, validated: ValidatedRequest) -> RenderedRuns:
        self._count(names.RENDER)
        request = validated.request
        return render_plans(request, validated.runs, self.deps.settings,
                            self._replay(request) if request.rejudge_of else None)

    def _replay(self, request: EvalRequest) -> Callable[[list[str]], dict[str, list[str]]]:
        """The stored predictions a re-judging request replays (ValidationError when a dataset has none)."""
        source = str(request.rejudge_of)
        store: Any = self.deps.store  # the ClickHouse store: a ResultStore with the reads

        def answers(datasets: list[str]) -> dict[str, list[str]]:
            found = store.replay_answers(source, request.model.name, datasets)
            if not found:
                raise ValidationError(
                    f"evaluation {source!r} has no stored predictions of model {request.model.name!r} on"
                    f" {', '.join(datasets)}: nothing to judge again",
                    field="rejudge_of",
                )
            return dict(found)

        return answers

    def begin_evaluation(self, validated: ValidatedRequest, started_at: datetime, attempt: int = 1) -> None:
        self._count(names.BEGIN)
        record = self._record(validated, "running")
        record.created_at = started_at  # the workflow's start: a re-run activity writes the same row again
        if attempt > 1:  # a row the reconciler finishes (its workflow gone) still names its attempt
            record.provenance["attempt"] = attempt
        self.deps.store.record_evaluation(record)

    def store_run(self, where: ExtractInput, parsed: ParsedRun) -> Stored:
        self._count(names.STORE)
        stored = steps.store_run(self.deps.store, where.eval_id, where.run_id, parsed)
        maybe_crash(names.STORE, "after")  # (the store logs "run stored" with its counts and time)
        return stored

    def _publish(self, inp: EventInput) -> None:
        self._count(names.PUBLISH)
        maybe_crash(f"{names.PUBLISH}.{inp.kind}")
        event = make_event(inp.kind, inp.event_id, inp.eval_id, inp.data)
        self.deps.publisher.publish(self.deps.settings.events_topic, event)
        maybe_crash(f"{names.PUBLISH}.{inp.kind}", "after")
        get_logger(eval_id=inp.eval_id).info("event published", kind=inp.kind, event_id=inp.event_id)

    # -- records ---------------------------------------------------------------------------------------------------
    def _record(self, validated: ValidatedRequest, status: Any) -> EvaluationRecord:
        return provenance.evaluation_record(validated, status, self.deps.settings)

    def _provenance(self, extra: dict[str, Any]) -> dict[str, Any]:
        return provenance.base_provenance(self.deps.settings, extra)
