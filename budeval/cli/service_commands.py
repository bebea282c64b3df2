"""CLI of the service: ``serve`` runs it (``--host``, ``--port``, ``--data-dir`` above the settings), ``status`` and
``cancel`` use its HTTP API. ``submit`` lives in :mod:`budeval.cli.submit_command`, where the service is in
:mod:`budeval.cli.locate`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from budeval.cli import progress_view
from budeval.cli.api_client import call_api
from budeval.cli.event_view import print_details
from budeval.config import Settings, cli_settings
from budeval.errors import TransientError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("serve", help="run the service (Dapr app, HTTP API, workflow worker)",
                              description="Run the service. Flags override the environment and the settings file.")
    p.add_argument("--host", help="address the HTTP API listens on (setting host, BUDEVAL_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port of the HTTP API, 0 for any free port (BUDEVAL_PORT; default 8080)")
    p.add_argument("--data-dir", type=Path, help="store, archive, results and sidecar state (BUDEVAL_DATA_DIR)")
    p.set_defaults(func=_serve)

    p = subparsers.add_parser("status", help="status, scores and failures of an evaluation (HTTP API)")
    p.add_argument("eval_id")
    p.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    p.set_defaults(func=_status)

    p = subparsers.add_parser("cancel", help="cancel an evaluation (HTTP API); waits until it has ended")
    p.add_argument("eval_id")
    p.add_argument("--no-wait", action="store_true", help="return once the workflow has the cancel request")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the evaluation's end")
    p.set_defaults(func=_cancel)


def serve_flags(args: argparse.Namespace) -> dict[str, str]:
    """``serve``'s own options as settings flags (above the environment, like ``--set``)."""
    flags: dict[str, str] = {}
    if args.host is not None:
        flags["host"] = args.host
    if args.port is not None:
        flags["port"] = str(args.port)
    if args.data_dir is not None:
        flags["data_dir"] = str(args.data_dir.absolute())
    return flags


def _serve(args: argparse.Namespace) -> int:
    from budeval.service.runtime import serve

    with cli_settings(serve_flags(args), None):
        return serve(Settings.from_env())


def _status(args: argparse.Namespace) -> int:
    body = call_api("GET", f"/evals/{args.eval_id}")
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    workflow = body.get("workflow") or {}
    print(f"{body['eval_id']}: {body['status']} (workflow: {workflow.get('status', '-')})")
    for line in progress_view.progress_lines(body.get("progress")):
        print(line)
    print_details(_status_view(body))
    return 0


def _status_view(body: dict[str, Any]) -> dict[str, Any]:
    view = {k: body.get(k) for k in ("reason", "scores", "failures", "usage")}
    evaluation = body.get("evaluation") or {}
    view["archive_url"] = evaluation.get("archive_url")
    view["reused_from"] = evaluation.get("reused_from")
    if evaluation.get("judge"):
        view["judge"] = evaluation.get("judge")
    if evaluation.get("rejudge_of"):
        view["rejudge_of"] = evaluation.get("rejudge_of")
    if evaluation.get("judge"):
        view["judge"] = evaluation.get("judge")
    if evaluation.get("rejudge_of"):
        view["rejudge_of"] = evaluation.get("rejudge_of")
    return view


def _cancel(args: argparse.Namespace) -> int:
    """Ask the workflow to cancel; then (unless ``--no-wait``) wait for the evaluation's end and print it: exit 0
    when it ended ``cancelled``, 1 when it finished otherwise first (a finalize already under way wins)."""
    poll_s = Settings.from_env().client_poll_s
    body = call_api("DELETE", f"/evals/{args.eval_id}")
    status = str(body.get("status"))
    deadline = time.monotonic() + max(1.0, args.timeout)
    while status == "cancel_requested" and not args.no_wait:
        if time.monotonic() >= deadline:
            raise TransientError(f"timed out waiting for {args.eval_id} to end (cancel requested)")
        time.sleep(poll_s)
        current = str(call_api("GET", f"/evals/{args.eval_id}").get("status"))
        if current not in ("pending", "running"):
            status = current
    print(f"{body.get('eval_id')}: {status}" + (" (already)" if body.get("already") else ""))
    return 0 if status in ("cancelled", "cancel_requested") else 1
