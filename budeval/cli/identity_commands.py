"""``budeval plan``: what a request would do, nothing started.

``plan REQUEST.json [--json]``: exit 0 for a valid request (the plan on stdout), 1 with the rejection reason (the
one-line error on stderr; with ``--json`` also the rejection document on stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from budeval.config import Settings
from budeval.errors import BudevalError, ValidationError
from budeval.logs import configure as configure_logs


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("plan", help="validate a request and show what it would run, or reuse; starts nothing")
    p.add_argument("request", metavar="REQUEST.json", help="the request file ('-': stdin)")
    p.add_argument("--store", metavar="DSN", help="where to look for reusable work (BUDEVAL_STORE_DSN)")
    p.add_argument("--no-store", action="store_true", help="do not look for reusable work")
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.set_defaults(func=cmd_plan)


def _read_request(where: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if where == "-" else Path(where).read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read {where}: {exc.strerror or exc}", field="request") from None


def cmd_plan(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from budeval.engine.catalog import load_suites
    from budeval.service.plan import plan_request, render_text

    out = out or sys.stdout
    configure_logs()
    settings = Settings.from_env()
    body = _read_request(args.request)
    suites = load_suites(settings.suites_dir)
    store: Any = None
    if not args.no_store:
        from budeval.storage.factory import open_store

        try:
            store = open_store(args.store or settings.resolved_store_dsn())
            store.migrate()
        except BudevalError as exc:
            print(f"budeval: warning: reuse not checked: {exc}", file=sys.stderr)
            store = None
    try:
        plan = plan_request(body, settings, suites, store)
    finally:
        if store is not None:
            store.close()
    if args.json:
        out.write(json.dumps(plan.document(), indent=2) + "\n")
    elif plan.valid:
        out.write(render_text(plan) + "\n")
    if not plan.valid:
        print(f"budeval: error: rejected: {plan.field}: {plan.reason}", file=sys.stderr)
        return 1
    return 0
