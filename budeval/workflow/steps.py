"""The steps that turn a finished run into stored results, shared by the workflow's activities and ``budeval extract``.

One code path: the activities (budeval/workflow/activities.py) wrap each step with what only the workflow needs
(execution counts, crash points, events), and :func:`extract_folder` -- what ``budeval extract`` runs -- calls the same
steps on a folder it is given. So a run extracted by hand and a run the workflow collected give the same rows, the
same status and reason, and provenance of the same shape.

    extract_run        parse the run folder; its scores are read before any row is written
    store_run          the run's score, status and prediction rows (an earlier copy of the run replaced)
    collected          what the run gives the evaluation: scores, statuses (after the prediction pass), environment
    archive_folder     raw files + manifest; a terminal archive error is returned (the rows stay), not raised
    finish_evaluation  the row's provenance completed (budeval/workflow/provenance.py) and the row written
    recorded_runs      the runs an evaluation row already lists, as outcomes, to judge it again with one run replaced

Every step is idempotent (the store replaces a run's rows, the archive skips identical files, the row is keyed by
eval id), which is what makes re-running an activity, or extracting a folder again, safe.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from budeval.backends.base import RunState
from budeval.config import Settings
from budeval.engine.environment import read_environment
from budeval.errors import ConflictError, TerminalError
from budeval.schemas.results import DatasetStatus, MetricRow, ParsedRun, RunFacts
from budeval.storage.base import Archive, EvaluationRecord, ResultStore, ScoreRow
from budeval.storage.clickhouse_rows import run_time
from budeval.storage.manifest import sha256_file
from budeval.workflow import provenance
from budeval.workflow.models import Archived, Collected, CollectInput, RunOutcome, Stored
from budeval.workflow.outcome import classify

#: Reads one OpenCompass work dir (``budeval.engine.results.parse_run``; tests hand in fakes).
Parser = Callable[[Path], ParsedRun]

#: ``provenance.extracted_by`` of an evaluation row that ``budeval extract`` created (absent on the workflow's rows).
EXTRACTED_BY = "budeval extract"


# -- the steps -------------------------------------------------------------------------------------------------------
def extract_run(parse: Parser, work_dir: Path) -> ParsedRun:
    """``parse(work_dir)``, its scores read at once so that a broken run fails here, before any row is written.
    Raises what the parser raises (:class:`~budeval.errors.ResultParseError` and its subclasses)."""
    parsed = parse(work_dir)
    _ = parsed.metrics
    return parsed


def store_run(store: ResultStore, eval_id: str, run_id: str, parsed: ParsedRun) -> Stored:
    """Write the run's rows, replacing an earlier copy of the same (eval, run); returns the counts written."""
    report = store.store_run(eval_id, run_id, parsed)
    return Stored(metrics=report.metrics, predictions=report.predictions)


def collected(parsed: ParsedRun, stored: Stored, work_dir: Path) -> Collected:
    """What a stored run gives its evaluation. Statuses are read after the store's prediction pass: a dataset whose
    predictions could not be read is not ``ok``."""
    return Collected(
        metrics=list(parsed.metrics),
        statuses=list(parsed.statuses),
        timestamp=parsed.facts.timestamp,
        opencompass_version=parsed.facts.opencompass_version,
        predictions=stored.predictions,
        environment=read_environment(work_dir),
    )


def archive_folder(archive: Archive, source: Path, prefix: str, manifest: dict[str, Any]) -> Archived:
    """Upload ``source`` under ``prefix`` with ``manifest`` as the manifest's provenance. A missing folder or a
    terminal archive error comes back in ``error`` (retrying cannot help); transient errors propagate (retry)."""
    if not source.is_dir():
        return Archived(url=None, error=f"no results folder for {prefix}")
    try:
        receipt = archive.upload_run(source, prefix, manifest)
    except TerminalError as exc:
        return Archived(url=None, error=str(exc))
    return Archived(url=receipt.url, files=receipt.files, uploaded=receipt.uploaded, skipped=receipt.skipped)


def finish_evaluation(
    store: ResultStore, record: EvaluationRecord, runs: list[RunOutcome], extra: dict[str, Any]
) -> EvaluationRecord:
    """Complete ``record``'s provenance with ``runs`` (merged into the runs it already lists, see
    :func:`budeval.workflow.provenance.finish`) and ``extra``, then write it (the latest write of a row wins)."""
    provenance.finish(record, runs, extra)
    store.record_evaluation(record)
    return record


def recorded_runs(record: EvaluationRecord, scores: list[ScoreRow], *, without: str = "") -> list[RunOutcome]:
    """The runs ``record`` lists in ``provenance.runs`` (but ``without``), as outcomes: phase and error from the
    entry, scores and statuses from the evaluation's stored ``scores``. Enough for :func:`classify` to judge the
    evaluation again when one of its runs is replaced."""
    outcomes = []
    for entry in provenance.runs_of(record.provenance):
        run_id = str(entry.get("run_id") or "")
        if not run_id or run_id == without:
            continue
        rows = [s for s in scores if s.run_id == run_id]
        statuses = {(s.model, s.dataset): DatasetStatus.model_validate(
            {"model": s.model, "dataset": s.dataset, "status": s.status, "reason": s.reason}
        ) for s in rows}
        metrics = [
            MetricRow(model=s.model, dataset=s.dataset, metric=s.metric, score=s.score, version=s.version,
                      mode=s.mode, reason=s.reason, judge=s.judge)
            for s in rows
        ]
        phase = entry.get("phase") or "succeeded"
        state = RunState.model_validate({"eval_id": record.eval_id, "run_id": run_id, "phase": phase})
        outcomes.append(
            RunOutcome(
                run_id=run_id,
                datasets=[str(d) for d in entry.get("datasets") or []],
                state=state,
                metrics=metrics,
                statuses=list(statuses.values()),
                predictions=int(entry.get("predictions") or 0),
                error=entry.get("error"),
            )
        )
    return outcomes


# -- budeval extract: the steps on a folder ----------------------------------------------------------------------------
class Extraction(BaseModel):
    """What :func:`extract_folder` did: the evaluation's row as written, the run's rows, the archive's receipt."""

    record: EvaluationRecord
    stored: Stored
    archived: Archived | None = None


def extract_folder(
    *,
    store: ResultStore,
    parse: Parser,
    settings: Settings,
    eval_id: str,
    run_id: str,
    run_dir: Path,
    archive: Archive | None = None,
    force: bool = False,
) -> Extraction:
    """Extract an OpenCompass work dir as run ``run_id`` of evaluation ``eval_id``, with the workflow's steps:
    parse -> store the run's rows -> judge the evaluation (its other recorded runs included) -> finish its row ->
    archive ``run_dir`` under ``{eval_id}/{run_id}`` (when ``archive`` is given).

    An evaluation this command created is extracted again as often as asked (same rows, no duplicates). One the
    workflow recorded is refused with :class:`ConflictError` unless ``force``: then this run's rows are replaced and
    the row keeps its identity, request and other runs, its status judged again over all of them. A terminal
    archive error is returned in ``archived.error`` (and the row's reason), after the rows are stored.
    """
    existing = store.get_evaluation(eval_id)
    if existing is not None and existing.provenance.get("extracted_by") != EXTRACTED_BY and not force:
        still = "" if existing.finished_at else ", and may still be writing it"
        raise ConflictError(
            f"evaluation {eval_id!r} was recorded by the workflow (status {existing.status}{still}); extracting "
            f"would replace the rows of its run {run_id!r}: pass --force to do that"
        )
    parsed = extract_run(parse, run_dir)
    stored = store_run(store, eval_id, run_id, parsed)
    got = collected(parsed, stored, run_dir)
    facts = parsed.facts
    record = existing.model_copy(deep=True) if existing is not None else _new_record(eval_id, facts, settings)
    earlier = {str(e.get("run_id")): e for e in provenance.runs_of(record.provenance)}
    planned = [str(d) for d in (earlier.get(run_id) or {}).get("datasets") or []]
    state = RunState(eval_id=eval_id, run_id=run_id, phase="succeeded")
    where = CollectInput(eval_id=eval_id, run_id=run_id, datasets=planned or facts.datasets, state=state)
    this = got.outcome(where)
    others = recorded_runs(record, store.results(eval_id), without=run_id)
    record.status, record.reason = classify([*others, this], None)
    record.model_name = record.model_name or ",".join(facts.models)
    record.datasets = record.datasets + [d for d in facts.datasets if d not in record.datasets]
    record.finished_at = record.finished_at or datetime.now(UTC)
    extracts = dict(record.provenance.get("extracts") or {}) | {run_id: _folder_facts(run_dir, facts)}
    finish_evaluation(store, record, [this], {"extracts": extracts})
    if archive is None:
        return Extraction(record=record, stored=stored)
    manifest = _extract_provenance(settings, {"eval_id": eval_id, "run": provenance.run_entry(this)})
    archived = archive_folder(archive, run_dir, f"{eval_id}/{run_id}", manifest)
    if archived.url is not None:
        # The evaluation's archive (the workflow's ``{eval_id}/``) already holds this run's folder: keep pointing there.
        kept = record.archive_url is not None and archived.url.startswith(record.archive_url)
        record.archive_url = record.archive_url if kept else archived.url
    if archived.error:
        record.reason = f"{record.reason + '; ' if record.reason else ''}archive failed: {archived.error}"
    store.record_evaluation(record)
    return Extraction(record=record, stored=stored, archived=archived)


def _new_record(eval_id: str, facts: RunFacts, settings: Settings) -> EvaluationRecord:
    return EvaluationRecord(
        eval_id=eval_id,
        status="running",  # judged by extract_folder before the row is written
        model_name=",".join(facts.models),
        datasets=list(facts.datasets),
        created_at=run_time(facts.timestamp),
        provenance=_extract_provenance(settings, {"extracted_by": EXTRACTED_BY}),
    )


def _extract_provenance(settings: Settings, extra: dict[str, Any]) -> dict[str, Any]:
    """budeval's own provenance, without the configured backend and runner image: they did not run this folder."""
    base = provenance.base_provenance(settings, extra)
    return {k: v for k, v in base.items() if k not in ("backend", "image")}


def _folder_facts(run_dir: Path, facts: RunFacts) -> dict[str, Any]:
    """``provenance.extracts[run_id]``: the folder extracted and what the reader noted about it."""
    config_sha = None
    if facts.config_file:
        try:
            config_sha = sha256_file(run_dir / facts.config_file)
        except OSError:
            config_sha = None
    return {
        "source": str(run_dir.resolve()),
        "timestamp": facts.timestamp,
        "summary_files": facts.summary_files,
        "config_file": facts.config_file,
        "config_sha256": config_sha,
        "notes": facts.notes,
        "judges": facts.judges,
    }
