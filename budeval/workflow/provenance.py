"""The provenance of an evaluation: what ran, where, with what, and how long each phase took.

Stored on the evaluation row: the queryable columns analysts filter on (``model_revision``, ``model_commit``,
``engine_version``, ``gpu_type``, ``gpu_count``) and the rest as JSON in ``provenance``. Keys of the JSON (see
docs/storage.md, "Provenance"):

- ``budeval_version``, ``budeval_commit``, ``budeval_built_at``: stamped at build time (:mod:`budeval.buildinfo`);
- ``engine``, ``engine_version`` (configured), ``opencompass_versions`` (per run: the version that actually ran, read
  from its output), ``backend``, ``image`` (the runner image, or ``local-venv``);
- ``identity`` / ``identity_unresolved`` / ``params_hash``: the evaluation's identity (budeval/engine/identity.py);
- ``generation``, ``model`` (the request's), ``config_hashes`` (sha256 of each run's rendered config),
  ``dataset_versions`` (OpenCompass's config hash prefix per dataset);
- ``environments``: per run, what the run itself captured (budeval/engine/environment.py);
- ``timings``: per run ``queued_s`` (submitted -> the process started), ``run_s`` (started -> seen finished),
  ``collect_s`` (finished -> rows stored), and the evaluation's ``total_s``;
- ``runs``: a list, one ``{run_id, datasets, phase, predictions, error}`` per run (:func:`run_entry`, whoever wrote
  it); ``started_at``, ``finished_at``;
- ``extracted_by`` (a row ``budeval extract`` created) and ``extracts`` (per run: the folder it read and what the
  reader noted; budeval/workflow/steps.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from budeval.buildinfo import build_info
from budeval.config import Settings
from budeval.engine.environment import gpu_summary
from budeval.engine.identity import runner_of
from budeval.schemas.request import EvalRequest
from budeval.storage.base import EvaluationRecord
from budeval.workflow.models import RunOutcome, ValidatedRequest


def base_provenance(settings: Settings, extra: dict[str, Any]) -> dict[str, Any]:
    """What every evaluation (and archive manifest) records about budeval and its configuration, plus ``extra``."""
    stamp = build_info()
    base: dict[str, Any] = {
        "budeval_version": stamp["version"],
        "budeval_commit": stamp["commit"],
        "budeval_built_at": stamp["built_at"],
        "engine": "opencompass",
        "engine_version": settings.engine_version,
        "backend": settings.backend,
        "image": runner_of(settings),
    }
    return {**base, **extra}


def evaluation_record(validated: ValidatedRequest, status: Any, settings: Settings) -> EvaluationRecord:
    """The evaluation's row before any run: identity, model, generation and the configured engine."""
    request = validated.request
    source = request.model.source
    if source.type == "huggingface":
        model_source, revision = source.path, source.revision or ""
    else:
        model_source, revision = f"{source.base_url}#{source.model}", ""
    components = validated.identity.get("components", {})
    judge = judge_provenance(request, components.get("judge"))
    return EvaluationRecord(
        eval_id=request.eval_id,
        experiment_id=request.experiment_id,
        status=status,
        params_hash=validated.params_hash,
        model_name=request.model.name,
        model_source=model_source,
        model_revision=revision,
        model_commit=model_commit(components.get("model", {})),
        engine_version=settings.engine_version,
        datasets=[d for run in validated.runs for d in run.datasets],
        labels=dict(request.labels),
        checkpoint_series=request.checkpoint.series if request.checkpoint else "",
        checkpoint_step=request.checkpoint.step if request.checkpoint else None,
        checkpoint_tokens=request.checkpoint.tokens_seen if request.checkpoint else None,
        judge=judge.get("label", ""),
        rejudge_of=request.rejudge_of,
        provenance=base_provenance(
            settings,
            {
                "generation": request.generation.model_dump(mode="json"),
                "model": source.model_dump(mode="json"),
                "params_hash": validated.params_hash,
                "identity": components,
                "identity_unresolved": validated.identity.get("unresolved", []),
                # The request itself (it holds references to secrets, never a key): `budeval rejudge` starts
                # from it.
                "request": request.model_dump(mode="json"),
                **({"judge": judge} if judge else {}),
                **({"rejudge_of": request.rejudge_of} if request.rejudge_of else {}),
            },
        ),
    )


def judge_provenance(request: EvalRequest, component: dict[str, Any] | None) -> dict[str, Any]:
    """The judge's provenance: ``label`` (the ``judge`` column), ``name``, ``source`` (the request's), ``commit``
    (hub commit or folder digest, "" for an endpoint) and ``template_sha256``; {} without a judge, and without its
    identity ``component`` (a judge named for no judged dataset is not part of the work, budeval/engine/identity.py)."""
    if request.judge is None or component is None:
        return {}
    from budeval.engine.judging import judge_label, template_hash

    model = (component or {}).get("model") or {}
    return {
        "label": judge_label(request.judge, model),
        "name": request.judge.model.name,
        "source": request.judge.model.source.model_dump(mode="json"),
        "commit": model_commit(model),
        "template_sha256": template_hash(request.judge),
        "settings": (component or {}).get("settings"),
    }


def model_commit(model: dict[str, Any]) -> str:
    """The model's pinned identity: the hub commit sha, or ``sha256:<digest of the folder's files>``; else ""."""
    if model.get("kind") == "hub":
        return str(model.get("commit") or "")
    files = model.get("files")
    if model.get("kind") == "folder" and files:
        from budeval.engine.digests import combine

        return f"sha256:{combine(files)}"
    return ""


def finish(record: EvaluationRecord, runs: list[RunOutcome], extra: dict[str, Any]) -> None:
    """Complete ``record`` with what the runs recorded: columns (engine version run, GPU type and count) and JSON.

    Per-run values (``runs``, ``environments``, ``opencompass_versions``, ``timings.runs``, ``dataset_versions``) are
    merged into what ``record`` already holds, a run's new entry replacing its earlier one (a run without clocks keeps
    its earlier timings): the workflow finishes a fresh record, ``budeval extract`` adds or replaces one run of a
    recorded evaluation. ``extra`` (e.g. ``config_hashes``, ``started_at``, ``finished_at``) is set as given.
    """
    earlier = record.provenance
    environments = _merged(earlier.get("environments"), {o.run_id: o.environment for o in runs if o.environment})
    versions = _merged(
        earlier.get("opencompass_versions"), {o.run_id: o.opencompass_version for o in runs if o.opencompass_version}
    )
    ran = sorted(set(versions.values()))
    if ran:
        record.engine_version = "+".join(ran)
    gpus = [gpu_summary(env) for env in environments.values()]
    if gpus:
        record.gpu_type = "+".join(sorted({t for t, _ in gpus if t}))
        record.gpu_count = max(n for _, n in gpus)
    dataset_versions = _merged(
        earlier.get("dataset_versions"),
        {m.dataset: m.version for o in runs for m in o.metrics if m.version and m.version != "-"},
    )
    replaced = {o.run_id for o in runs}
    entries = [e for e in runs_of(earlier) if e.get("run_id") not in replaced] + [run_entry(o) for o in runs]
    clocks = timings(runs, extra.get("started_at"), extra.get("finished_at"))
    before = _merged(earlier.get("timings"), {})
    before_runs = _merged(before.get("runs"), {})
    clocks["runs"] = before_runs | {k: v for k, v in clocks["runs"].items() if v or k not in before_runs}
    if "total_s" not in clocks and "total_s" in before:
        clocks["total_s"] = before["total_s"]
    record.provenance = earlier | {
        "opencompass_versions": versions,
        "environments": environments,
        "timings": clocks,
        "dataset_versions": dataset_versions,
        "runs": entries,
        **extra,
    }


def run_entry(outcome: RunOutcome) -> dict[str, Any]:
    """One run in ``provenance.runs``: ``run_id``, ``datasets``, ``phase`` (the run's final phase), ``predictions``
    (rows stored), ``error`` (why the run failed; None when it ran through). The same shape whoever wrote it."""
    return {
        "run_id": outcome.run_id,
        "datasets": outcome.datasets,
        "phase": outcome.state.phase,
        "predictions": outcome.predictions,
        "error": outcome.error,
    }


def runs_of(provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """``provenance.runs`` as a list of run entries (rows written before it was a list hold a dict by run id)."""
    found = provenance.get("runs") or []
    if isinstance(found, dict):
        return [{"run_id": key, **value} for key, value in found.items() if isinstance(value, dict)]
    return [entry for entry in found if isinstance(entry, dict)]


def _merged(earlier: Any, new: dict[str, Any]) -> dict[str, Any]:
    return {**(earlier if isinstance(earlier, dict) else {}), **new}


def timings(runs: list[RunOutcome], started_at: str | None, finished_at: str | None) -> dict[str, Any]:
    """Seconds per phase, per run and for the whole evaluation (missing clocks leave a phase out)."""
    out: dict[str, Any] = {"runs": {}}
    total = _seconds(started_at, finished_at)
    if total is not None:
        out["total_s"] = total
    for o in runs:
        clock = dict(o.timings)
        captured = o.environment.get("captured_at")
        if isinstance(captured, int | float):
            clock["started_at"] = datetime.fromtimestamp(float(captured), tz=UTC).isoformat()
        phases = {
            "queued_s": _seconds(clock.get("submitted_at"), clock.get("started_at")),
            "run_s": _seconds(clock.get("started_at"), clock.get("finished_at")),
            "collect_s": _seconds(clock.get("finished_at"), clock.get("collected_at")),
        }
        out["runs"][o.run_id] = {k: v for k, v in phases.items() if v is not None}
    return out


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return round((_aware(end) - _aware(start)).total_seconds(), 3)
    except ValueError:
        return None


def _aware(text: str) -> datetime:
    """The workflow's clock is naive UTC (``ctx.current_utc_datetime``); the run's own clock is aware."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def summary(record: EvaluationRecord) -> dict[str, Any]:
    """The provenance in the final event: what identifies the work and where it ran (the row holds the rest)."""
    p = record.provenance
    return {
        "params_hash": record.params_hash,
        "config_hashes": p.get("config_hashes", {}),
        "model_commit": record.model_commit,
        "engine_version": record.engine_version,
        "gpu_type": record.gpu_type,
        "gpu_count": record.gpu_count,
        "budeval_version": p.get("budeval_version"),
        "budeval_commit": p.get("budeval_commit"),
        "image": p.get("image"),
        "hosts": sorted({str(e.get("node") or e.get("hostname")) for e in p.get("environments", {}).values()}),
        "timings": p.get("timings", {}),
        "identity_unresolved": p.get("identity_unresolved", []),
        **({"judge": record.judge} if record.judge else {}),
        **({"rejudge_of": record.rejudge_of} if record.rejudge_of else {}),
    }
