"""``budeval rejudge EVAL_ID --judge ...``: judge an earlier evaluation's stored predictions again, without inference.

The earlier evaluation's request (kept in its provenance, ``provenance.request``) is submitted again under a new
eval id with the new ``judge`` and ``rejudge_of: EVAL_ID`` -- through the request topic, like ``budeval submit``.
The workflow then replays the stored predictions instead of calling the evaluated model (budeval/engine/render.py,
``BudevalReplay``), so only the judge is asked. The new evaluation names the earlier one in its ``rejudge_of``
column, its status and its provenance.
"""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path
from typing import Any

from budeval.config import Settings
from budeval.errors import ValidationError
from budeval.schemas.request import EvalRequest, JudgeSpec

#: Request fields that belong to the earlier evaluation only (its gate, its place in a checkpoint series, force).
_NOT_CARRIED = ("gate", "force", "rejudge_of", "judge", "checkpoint")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("rejudge", help="judge an evaluation's stored predictions again (no inference)")
    p.add_argument("eval_id", help="the evaluation whose stored predictions are judged again")
    p.add_argument("--judge", required=True, metavar="JSON|FILE",
                   help="the judge: a JSON object ({\"model\": {...}, \"template\": ...}) or a file holding one")
    p.add_argument("--new-id", default=None, help="eval id of the new evaluation (default: <eval_id>-rj-<random>)")
    p.add_argument("--wait", action="store_true", help="follow the events topic until the new evaluation ends")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (readiness and --wait)")
    p.add_argument("--json", action="store_true", help="print the final event as JSON")
    p.set_defaults(func=_rejudge)


def read_judge(text: str) -> JudgeSpec:
    """The ``--judge`` value: inline JSON, or the path of a JSON file. Raises ValidationError saying what is wrong."""
    raw = text
    if not text.lstrip().startswith("{"):
        try:
            raw = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValidationError(f"--judge: cannot read {text}: {exc.strerror or exc}", field="judge") from None
    try:
        return JudgeSpec.model_validate(json.loads(raw))
    except ValueError as exc:
        raise ValidationError(f"--judge: {exc}", field="judge") from None


def rejudge_request(source: dict[str, Any], judge: JudgeSpec, new_id: str) -> dict[str, Any]:
    """The re-judging request: the earlier ``source`` request under ``new_id``, with ``judge`` and ``rejudge_of``.
    Raises ValidationError when the result is not a valid request (e.g. ``new_id`` is not a DNS label)."""
    request = {k: v for k, v in source.items() if k not in _NOT_CARRIED}
    request.update(eval_id=new_id, judge=judge.model_dump(mode="json"), rejudge_of=source["eval_id"])
    try:
        return EvalRequest.model_validate(request).model_dump(mode="json", exclude_defaults=False)
    except ValueError as exc:
        raise ValidationError(f"the re-judging request is not valid: {exc}") from None


def default_new_id(eval_id: str) -> str:
    """``<eval_id>-rj-<6 hex>``, shortened to fit a DNS label."""
    suffix = f"-rj-{uuid.uuid4().hex[:6]}"
    return eval_id[: 63 - len(suffix)].rstrip("-") + suffix


def _rejudge(args: argparse.Namespace) -> int:
    from budeval.cli.api_client import call_api
    from budeval.cli.submit_command import submit_request

    settings = Settings.from_env()
    judge = read_judge(args.judge)
    body = call_api("GET", f"/evals/{args.eval_id}", None, settings)
    evaluation = body.get("evaluation") or {}
    source = (evaluation.get("provenance") or {}).get("request")
    if not isinstance(source, dict):
        raise ValidationError(f"evaluation {args.eval_id!r} has no stored request (recorded before budeval kept it)")
    if evaluation.get("status") not in ("completed", "partial", "reused"):
        raise ValidationError(f"evaluation {args.eval_id!r} is {evaluation.get('status')}: only finished evaluations"
                              " have predictions to judge again")
    request = rejudge_request(source, judge, args.new_id or default_new_id(args.eval_id))
    return submit_request(settings, request, wait=args.wait, timeout=args.timeout, as_json=args.json)
