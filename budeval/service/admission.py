"""One path for every request, from the topic or ``POST /evals``: admit, reject (with an event) or start a workflow.

Order: parse and validate (:func:`budeval.service.intake.parse_request`), check the catalog (unknown suite or dataset
is a rejection here, so no workflow starts for it), check what the request may reach (registered credentials and
endpoint hosts: :mod:`budeval.policy.credentials`; files under the roots: :mod:`budeval.policy.paths`), then start
the evaluation workflow with instance id = eval id unless an instance with that id exists already (a duplicate
delivery: nothing new starts). Trouble reaching the sidecar (or the credential registry) is ``retry``; bad input is
never retried.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from budeval.config import Settings
from budeval.errors import BudevalError, PolicyError, TransientError
from budeval.events.cloudevents import make_event
from budeval.events.publisher import EventPublisher
from budeval.jsonlimits import TooDeepError, check_depth
from budeval.logs import get_logger
from budeval.policy.credentials import EndpointPolicy, StaticRegistry
from budeval.policy.paths import check_request_paths
from budeval.schemas.request import EvalRequest
from budeval.service.intake import MAX_REQUEST_BYTES, Rejection, parse_request, sniff_eval_id
from budeval.service.metrics import Metrics
from budeval.service.status import (
    ACTIVE_WORKFLOW_STATES,
    RERUNNABLE,
    evaluation_status,
    workflow_attempt,
    workflow_view,
)
from budeval.storage.base import EvaluationRecord
from budeval.workflow import names
from budeval.workflow.models import WorkflowInput

Source = Literal["topic", "http"]


class WorkflowClient(Protocol):
    """The part of ``dapr.ext.workflow.DaprWorkflowClient`` the service uses."""

    def get_workflow_state(self, instance_id: str, *, fetch_payloads: bool = True) -> Any: ...

    def schedule_new_workflow(self, workflow: Any, *, input: Any = None, instance_id: str | None = None) -> str: ...

    def raise_workflow_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None: ...

    def purge_workflow(self, instance_id: str, recursive: bool = True) -> Any: ...


class EvaluationRows(Protocol):
    """The part of the result store admission reads (only for a ``force`` request whose workflow is gone)."""

    def get_evaluation(self, eval_id: str) -> EvaluationRecord | None: ...


@dataclass(frozen=True)
class Decision:
    kind: Literal["accepted", "duplicate", "rejected", "retry"]
    eval_id: str | None = None
    rejection: Rejection | None = None
    #: For ``retry``: what was unreachable (no secrets: exception class and a short message).
    detail: str = ""
    #: For ``duplicate``: the existing instance's runtime status.
    workflow_status: str | None = None
    #: For ``rejected``: the request's id (its CloudEvent id, else one made up here), also in the ``rejected`` event.
    request_id: str | None = None
    #: For ``accepted``: which attempt of this eval id starts (above 1: a ``force`` re-run).
    attempt: int = 1


def _event_envelope(body: bytes) -> tuple[str | None, bytes | dict[str, Any]]:
    """The CloudEvent id (if the body is one) and what to hand to ``parse_request``.

    ``data_base64`` (binary data, as daprd delivers a non-JSON payload) is decoded here, since intake only reads
    ``data``.
    """
    if len(body) > MAX_REQUEST_BYTES:
        return _sniff_event_id(body), body
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, body
    if not isinstance(doc, dict) or "specversion" not in doc:
        return None, body
    raw_id = doc.get("id")
    ce_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= 256 else None
    encoded = doc.get("data_base64")
    if doc.get("data") is None and isinstance(encoded, str):
        try:
            return ce_id, base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return ce_id, b"\x00not base64"
    return ce_id, doc


_EVENT_ID = re.compile(rb'^\s*\{[^{]*?"id"\s*:\s*"([^"\\]{1,256})"')


def _sniff_event_id(body: bytes) -> str | None:
    """A CloudEvent's id when the body is too large to parse: only an ``id`` before any nested object counts."""
    found = _EVENT_ID.search(body[:65536])
    return found.group(1).decode("utf-8", "replace") if found else None


def check_catalog(request: EvalRequest, suites: Mapping[str, list[str]]) -> Rejection | None:
    """Unknown suite or dataset names: the same check as the workflow's validate activity, done before it starts."""
    from budeval.engine.catalog import resolve_datasets

    try:
        resolve_datasets(request, suites)
    except BudevalError as exc:
        return Rejection(exc.message, getattr(exc, "field", None) or "datasets", request.eval_id)
    return None


def check_policy(request: EvalRequest, settings: Settings, endpoints: EndpointPolicy) -> Rejection | None:
    """What the request may reach (credentials, endpoint hosts, file paths); raises TransientError to retry."""
    try:
        endpoints.check(request)
        check_request_paths(request, settings)
    except PolicyError as exc:
        return Rejection(exc.message.removeprefix(f"{exc.field}: "), exc.field, request.eval_id)
    return None


class Admission:
    """Turns request bodies into decisions; publishes ``rejected`` events and counts everything."""

    def __init__(
        self,
        settings: Settings,
        workflows: WorkflowClient,
        publisher: EventPublisher,
        suites: Mapping[str, list[str]],
        metrics: Metrics,
        endpoints: EndpointPolicy | None = None,
        store: EvaluationRows | None = None,
    ) -> None:
        self.settings = settings
        self.workflows = workflows
        self.publisher = publisher
        self.suites = suites
        self.metrics = metrics
        self.store = store
        self.endpoints = endpoints or EndpointPolicy(
            StaticRegistry.from_settings(settings), allowed_networks=settings.endpoint_allowed_networks
        )

    def admit(self, body: bytes) -> tuple[str | None, EvalRequest | Rejection]:
        """Parse, validate, check catalog and policy; raises TransientError when the policy cannot be asked now."""
        try:
            check_depth(body, self.settings.max_json_depth)
            ce_id, parsed_input = _event_envelope(body)
            parsed = parse_request(parsed_input)
        except (TooDeepError, RecursionError):  # thousands of nested brackets: answered before any parse
            too_deep = Rejection(f"request is nested deeper than {self.settings.max_json_depth} levels",
                                 "<request>", sniff_eval_id(body))
            return _sniff_event_id(body), too_deep
        if isinstance(parsed, EvalRequest):
            rejected = check_catalog(parsed, self.suites) or check_policy(parsed, self.settings, self.endpoints)
            if rejected is not None:
                return ce_id, rejected
        return ce_id, parsed

    def handle(self, body: bytes, source: Source) -> Decision:
        try:
            ce_id, parsed = self.admit(body)
        except TransientError as exc:
            get_logger(source=source).warning("request not checked now; asking for redelivery", error=exc.message)
            return Decision("retry", detail=exc.message)
        if isinstance(parsed, Rejection):
            return self._reject(parsed, ce_id, source)
        decision = self._start(parsed)
        if decision.kind == "duplicate":
            return self._tell_duplicate(decision, ce_id, source)
        return decision

    def _tell_duplicate(self, decision: Decision, ce_id: str | None, source: Source) -> Decision:
        """A ``duplicate`` event answers the request (``submit --wait`` follows only what comes after its publish)."""
        request_id = ce_id or uuid.uuid4().hex
        data = {"status": "duplicate", "workflow_status": decision.workflow_status, "request_id": request_id,
                "message": decision.detail}
        event = make_event("duplicate", f"duplicate.{request_id}", decision.eval_id, data)
        try:
            self.publisher.publish(self.settings.events_topic, event)
        except TransientError as exc:
            get_logger(eval_id=decision.eval_id, source=source).warning("duplicate event not published",
                                                                        error=exc.message)
            if source == "topic":
                return Decision("retry", decision.eval_id, detail=exc.message)
        return Decision("duplicate", decision.eval_id, workflow_status=decision.workflow_status,
                        request_id=request_id, detail=decision.detail)

    def _reject(self, rejection: Rejection, ce_id: str | None, source: Source) -> Decision:
        # Redelivery of the same CloudEvent publishes the same event id, so consumers can dedupe.
        request_id = ce_id or uuid.uuid4().hex
        event_id = f"rejected.{request_id}"
        data: dict[str, Any] = {"status": "rejected", "reason": rejection.reason, "field": rejection.field,
                                "request_id": request_id}
        event = make_event("rejected", event_id, rejection.eval_id, data)
        log = get_logger(eval_id=rejection.eval_id, source=source)
        try:
            self.publisher.publish(self.settings.events_topic, event)
        except TransientError as exc:
            log.warning("rejected event not published; asking for redelivery", error=exc.message)
            return Decision("retry", rejection.eval_id, rejection, detail=exc.message, request_id=request_id)
        self.metrics.rejects.labels(source=source).inc()
        log.info("request rejected", reason=rejection.reason[:300], field=rejection.field, request_id=request_id)
        return Decision("rejected", rejection.eval_id, rejection, request_id=request_id)

    def _start(self, request: EvalRequest) -> Decision:
        eval_id = request.eval_id
        log = get_logger(eval_id=eval_id)
        try:
            existing = self.workflows.get_workflow_state(eval_id, fetch_payloads=True)
        except Exception as exc:  # gRPC errors, connection refused: the sidecar is not there yet
            log.warning("workflow state unavailable", error=type(exc).__name__)
            return Decision("retry", eval_id, detail=f"workflow sidecar unavailable: {type(exc).__name__}")
        attempt = 1
        if existing is not None:
            status = _status_name(existing)
            outcome = evaluation_status(workflow_view(existing), None)
            if not request.force or status in ACTIVE_WORKFLOW_STATES or outcome not in RERUNNABLE:
                log.info("duplicate request; workflow exists", workflow_status=status)
                hint = f"evaluation is {outcome}" + ("; send it with force: true to re-run it under this id"
                                                     if outcome in RERUNNABLE and status not in ACTIVE_WORKFLOW_STATES
                                                     else "")
                return Decision("duplicate", eval_id, workflow_status=status, detail=hint)
            attempt = workflow_attempt(existing) + 1
            try:  # the earlier attempt's history (and its runs' child workflows) make room for the new one
                self.workflows.purge_workflow(eval_id, recursive=True)
            except Exception as exc:
                log.warning("earlier workflow not purged", error=type(exc).__name__)
                return Decision("retry", eval_id, detail=f"earlier workflow not purged: {type(exc).__name__}")
        elif self.store is not None:  # no workflow (purged, or the sidecar's state lost): the row decides
            try:
                earlier = self.store.get_evaluation(eval_id)
            except TransientError as exc:
                return Decision("retry", eval_id, detail=exc.message)
            if earlier is not None:
                stale = earlier.status in {"pending", "running"}  # a row its gone workflow left behind
                if earlier.status not in RERUNNABLE and not stale:
                    # A finished evaluation stays what it is, forced or not (a re-run would supersede its scores).
                    log.info("duplicate request; evaluation finished", status=earlier.status)
                    return Decision("duplicate", eval_id, workflow_status=None,
                                    detail=f"evaluation is {earlier.status}")
                if not request.force and earlier.status != "rejected":
                    # failed/cancelled, or left running: as with a workflow, only ``force`` re-runs it. A rejected
                    # request never ran, so its corrected resubmission starts (as the next attempt: own event ids).
                    log.info("duplicate request; evaluation ended", status=earlier.status)
                    return Decision("duplicate", eval_id, workflow_status=None,
                                    detail=f"evaluation is {earlier.status}; send it with force: true to re-run "
                                           "it under this id")
                attempt = int(earlier.provenance.get("attempt", 1) or 1) + 1
        workflow_input = WorkflowInput(
            request=request,
            received_at=datetime.now(UTC).isoformat(),
            max_parallel_runs=self.settings.max_parallel_runs,
            poll_initial_s=self.settings.poll_initial_s,
            poll_max_s=self.settings.poll_max_s,
            retry_window_s=self.settings.activity_retry_window_s,
            retry_first_s=self.settings.activity_retry_first_s,
            retry_max_s=self.settings.activity_retry_max_s,
            attempt=attempt,
        )
        try:
            self.workflows.schedule_new_workflow(
                names.EVALUATION_WORKFLOW, input=workflow_input.model_dump(mode="json"), instance_id=eval_id
            )
        except Exception as exc:
            if _already_exists(exc):  # a concurrent delivery won the race
                return Decision("duplicate", eval_id, workflow_status="RUNNING")
            log.warning("workflow not scheduled", error=type(exc).__name__)
            return Decision("retry", eval_id, detail=f"workflow sidecar unavailable: {type(exc).__name__}")
        self.metrics.evaluations.labels(status="accepted").inc()
        log.info("evaluation accepted", model=request.model.name, attempt=attempt)
        return Decision("accepted", eval_id, attempt=attempt)


def _status_name(state: Any) -> str:
    status = getattr(state, "runtime_status", None)
    return str(getattr(status, "name", status) or "UNKNOWN")


def _already_exists(exc: Exception) -> bool:
    code = getattr(exc, "code", None)
    try:
        name = str(getattr(code(), "name", "")) if callable(code) else ""
    except Exception:
        name = ""
    details = getattr(exc, "details", None)
    try:
        text = str(details()) if callable(details) else str(exc)
    except Exception:
        text = str(exc)
    return name == "ALREADY_EXISTS" or "already exists" in text.lower()
