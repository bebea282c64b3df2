"""How the CLI shows an evaluation's events and status: progress lines on stderr while waiting, the final event's
status, reason, scores, failures and provenance summary on stdout (``submit --wait``, ``status``)."""

from __future__ import annotations

import sys
from typing import Any

from budeval.cli import progress_view
from budeval.events.cloudevents import kind_of
from budeval.schemas.results import RunUsage


def print_progress(event: dict[str, Any]) -> None:
    """``started``/``progress`` lines on stderr while waiting (stdout keeps only the result)."""
    data = event.get("data") or {}
    kind = kind_of(event)
    if kind == "progress" and data.get("live"):
        print(progress_view.event_line(data), file=sys.stderr)
    elif kind == "progress":
        state = "ok" if data.get("ok") else f"failed: {data.get('error') or data.get('phase')}"
        print(f"  run {data.get('run_id')} {','.join(data.get('datasets') or [])}: {state}", file=sys.stderr)
    elif kind == "started":
        print(f"  started: {len(data.get('runs') or [])} run(s)", file=sys.stderr)


def print_event(event: dict[str, Any]) -> None:
    data = event.get("data") or {}
    status = data.get("status", kind_of(event))
    print(f"{data.get('eval_id') or '-'}: {status}")
    print_details(data)


def print_details(data: dict[str, Any]) -> None:
    if data.get("reason"):
        print(f"  reason: {data['reason']}" + (f" (field: {data['field']})" if data.get("field") else ""))
    if data.get("reused_from"):
        print(f"  reused from: {data['reused_from']}")
    if data.get("judge"):
        print(f"  judge: {data['judge']}")
    if data.get("rejudge_of"):
        print(f"  re-judged the predictions of: {data['rejudge_of']}")
    if data.get("archive_url"):
        print(f"  archive: {data['archive_url']}")
    scores = data.get("scores") or []
    if scores:
        print(f"  {'model':<28} {'dataset':<24} {'metric':<16} score")
        for row in scores:
            score = row.get("score")
            shown = "-" if score is None else f"{score:.4g}" if isinstance(score, float) else str(score)
            print(f"  {row.get('model', ''):<28} {row.get('dataset', ''):<24} {row.get('metric', ''):<16} {shown}")
    for failure in data.get("failures") or []:
        print(f"  failed: {failure.get('run_id')} {failure.get('dataset', '')} {failure.get('reason', '')}")
    if data.get("usage"):
        print(f"  {RunUsage.model_validate(data['usage']['total']).line()}")
    for line in provenance_lines(data.get("provenance") or {}):
        print(f"  {line}")


def provenance_lines(p: dict[str, Any]) -> list[str]:
    """The final event's provenance summary (budeval.workflow.provenance.summary) as a few readable lines."""
    if not p:
        return []
    lines = [f"identity: {p.get('params_hash') or 'unresolved (never reused)'}"]
    lines += [f"  unresolved: {why}" for why in p.get("identity_unresolved") or []]
    if p.get("model_commit"):
        lines.append(f"model: {p['model_commit']}")
    if p.get("judge"):
        lines.append(f"judge: {p['judge']}")
    if p.get("rejudge_of"):
        lines.append(f"re-judged the stored predictions of {p['rejudge_of']} (no inference)")
    gpu = f"{p.get('gpu_count')} x {p['gpu_type']}" if p.get("gpu_type") else "no GPU"
    lines.append(f"ran on: {', '.join(p.get('hosts') or []) or '-'} ({gpu}), image {p.get('image') or '-'}")
    lines.append(f"engine: OpenCompass {p.get('engine_version') or '-'}; budeval {p.get('budeval_version') or '-'}"
                 f" ({p.get('budeval_commit') or 'commit not stamped'})")
    for run_id, config in sorted((p.get("config_hashes") or {}).items()):
        phases = (p.get("timings") or {}).get("runs", {}).get(run_id, {})
        spent = ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in phases.items())
        lines.append(f"run {run_id}: config {config[:16]}" + (f"; {spent}" if spent else ""))
    return lines
