"""What a request would do, without doing it: ``budeval plan REQUEST.json`` and ``POST /evals?dry_run=true``.

The same steps as a real submission, in the same code: the service's intake (strict JSON types, size limit) and
catalog check, the identity (:mod:`budeval.engine.identity`), the run plan and the rendered configs
(:func:`budeval.workflow.activities.render_plans`) and the store's reuse lookup. Nothing is started, published or
written (except the digest cache: a later real submission then reads no file again).

The plan document (``Plan.model_dump``)::

    {"valid": true, "eval_id": "...",
     "identity": {"hash": "<sha256>|null", "components": {...}, "unresolved": ["why", ...]},
     "datasets": [{"name": ..., "kind": "bundled|stock|custom", ...digests}],
     "runs": [{"run_id": "r0", "datasets": [...]}],
     "configs": {"r0": {"hash": "<sha256 of the text>", "text": "..."}},
     "reuse": {"would_reuse": bool, "from": "<eval id>|null", "why": "..."}}

A rejected request: ``{"valid": false, "eval_id": ..., "reason": ..., "field": ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from budeval.config import Settings
from budeval.engine.catalog import resolve_datasets
from budeval.engine.identity import compute_identity
from budeval.errors import BudevalError
from budeval.policy.credentials import EndpointPolicy, StaticRegistry
from budeval.schemas.request import EvalRequest
from budeval.service.admission import check_catalog, check_policy
from budeval.service.intake import Rejection, parse_request
from budeval.workflow.activities import plan_runs, render_plans

#: ``store`` of :func:`plan_request` for an installation whose store was never created: nothing can be reused.
NO_STORE_YET: Any = object()


class Plan(BaseModel):
    valid: bool
    eval_id: str | None = None
    reason: str | None = None
    field: str | None = None
    identity: dict[str, Any] | None = None
    datasets: list[dict[str, Any]] = Field(default_factory=list)
    runs: list[dict[str, Any]] = Field(default_factory=list)
    configs: dict[str, dict[str, str]] = Field(default_factory=dict)
    reuse: dict[str, Any] | None = None

    def document(self) -> dict[str, Any]:
        """The JSON document (a rejection carries only ``valid``, ``eval_id``, ``reason``, ``field``)."""
        if not self.valid:
            return {"valid": False, "eval_id": self.eval_id, "reason": self.reason, "field": self.field}
        return self.model_dump(mode="json", exclude={"reason", "field"})


def plan_request(
    body: bytes | str | dict[str, Any],
    settings: Settings,
    suites: Mapping[str, list[str]],
    store: Any | None,
    endpoints: EndpointPolicy | None = None,
) -> Plan:
    """The plan of ``body`` (a request or a CloudEvent holding one), validated exactly as intake does: the schema,
    the catalog and the policy (credentials, endpoint hosts, path roots: docs/security.md). ``store`` None: reuse is
    not looked up; :data:`NO_STORE_YET`: nothing to reuse. ``endpoints`` None: the locally registered credentials
    (``BUDEVAL_CREDENTIALS``) are asked."""
    parsed = parse_request(body)
    if isinstance(parsed, EvalRequest):
        policy = endpoints or EndpointPolicy(
            StaticRegistry.from_settings(settings), allowed_networks=settings.endpoint_allowed_networks
        )
        rejected = check_catalog(parsed, suites) or check_policy(parsed, settings, policy)
        parsed = rejected if rejected is not None else parsed
    if isinstance(parsed, Rejection):
        return Plan(valid=False, eval_id=parsed.eval_id, reason=parsed.reason, field=parsed.field)
    request = parsed
    try:
        identity = compute_identity(request, suites, settings)
        runs = plan_runs(request, resolve_datasets(request, suites))
        replay = getattr(store, "replay_answers", None) if request.rejudge_of else None
        rendered = render_plans(
            request,
            runs,
            settings,
            (lambda names: replay(request.rejudge_of, request.model.name, names)) if replay is not None else None,
        )
    except BudevalError as exc:
        return Plan(valid=False, eval_id=request.eval_id, reason=exc.message, field=getattr(exc, "field", None))
    return Plan(
        valid=True,
        eval_id=request.eval_id,
        identity=identity.model_dump(mode="json"),
        datasets=list(identity.components["datasets"]),
        runs=[r.model_dump(mode="json") for r in runs],
        configs={
            spec.run_id: {"hash": rendered.config_hashes[spec.run_id], "text": spec.config_text}
            for spec in rendered.specs
        },
        reuse=_reuse(request, identity.hash, store),
    )


def _reuse(request: EvalRequest, identity_hash: str | None, store: Any | None) -> dict[str, Any]:
    if identity_hash is None:
        return {"would_reuse": False, "from": None, "why": "the identity is unresolved: never reused"}
    if request.force:
        return {"would_reuse": False, "from": None, "why": "force: runs even when identical work exists"}
    if store is None:
        return {"would_reuse": None, "from": None, "why": "no store to look in"}
    if store is NO_STORE_YET:
        return {"would_reuse": False, "from": None, "why": "nothing stored yet (the store does not exist)"}
    try:
        found = store.find_reusable(identity_hash)
    except BudevalError as exc:
        return {"would_reuse": None, "from": None, "why": f"store unavailable: {exc.message}"}
    if found is None or found.eval_id == request.eval_id:
        return {"would_reuse": False, "from": None, "why": "no completed evaluation with this identity"}
    return {"would_reuse": True, "from": found.eval_id, "why": "a completed evaluation has this identity"}


def rejection_text(plan: Plan) -> str:
    """``field: reason`` of a rejected plan, the field named once (a ValidationError's message already starts with
    it)."""
    reason = plan.reason or "invalid request"
    if plan.field and not reason.startswith(f"{plan.field}: "):
        return f"{plan.field}: {reason}"
    return reason


def render_text(plan: Plan) -> str:
    """The plan for a terminal: identity components and hash, datasets, runs with config hashes, reuse."""
    if not plan.valid:
        return f"invalid request{f' {plan.eval_id!r}' if plan.eval_id else ''}: {rejection_text(plan)}"
    identity = plan.identity or {}
    lines = [f"evaluation {plan.eval_id}", f"identity  {identity.get('hash') or 'UNRESOLVED (never reused)'}"]
    lines += [f"  unresolved: {why}" for why in identity.get("unresolved", [])]
    components = identity.get("components", {})
    model = components.get("model", {})
    lines.append(f"  model: {_model_line(model)}")
    lines.append(f"  generation: {components.get('generation')}")
    lines.append(f"  engine: {components.get('engine')}")
    lines.append("datasets")
    for d in plan.datasets:
        digest = d.get("sha256") or d.get("config_hash") or "-"
        lines.append(f"  {d['name']:<20} {d['kind']:<8} {str(digest)[:16]}")
    lines.append("runs")
    for run in plan.runs:
        lines.append(
            f"  {run['run_id']}: {', '.join(run['datasets'])}  config {plan.configs[run['run_id']]['hash'][:16]}"
        )
    reuse = plan.reuse or {}
    verdict = {True: f"REUSED from {reuse.get('from')}", False: "runs", None: "unknown"}[reuse.get("would_reuse")]
    lines.append(f"reuse     {verdict} ({reuse.get('why')})")
    return "\n".join(lines)


def _model_line(model: dict[str, Any]) -> str:
    kind = model.get("kind")
    if kind == "hub":
        if model.get("commit"):  # resolved: the commit is the work, the requested branch/tag is not kept
            return f"hub {model.get('id')} @ {model['commit']}"
        return f"hub {model.get('id')} @ {model.get('revision')} -> unresolved"
    if kind == "folder":
        files = model.get("files") or {}
        return f"folder, {len(files)} files: " + ", ".join(f"{n} {d[:12]}" for n, d in files.items())
    return str(model)
