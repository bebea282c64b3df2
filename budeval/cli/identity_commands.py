"""``budeval plan`` (what a request would do, nothing started) and ``budeval explain`` (why two evaluations differ).

``plan REQUEST.json [--json]``: exit 0 for a valid request (the plan on stdout), 1 with the rejection reason (the
one-line error on stderr; with ``--json`` also the rejection document on stdout). ``explain A B [--json]``: the
provenance diff of two stored evaluations, then their score diff (budeval/storage/explain.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from budeval.cli.reading import reading_store, verbose_arg
from budeval.config import Settings
from budeval.errors import BudevalError, NotFoundError, ValidationError
from budeval.logs import configure as configure_logs


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("plan", help="validate a request and show what it would run, or reuse; starts nothing")
    p.add_argument("request", metavar="REQUEST.json", help="the request file ('-': stdin)")
    p.add_argument("--store", metavar="DSN", help="where to look for reusable work (BUDEVAL_STORE_DSN)")
    p.add_argument("--no-store", action="store_true", help="do not look for reusable work")
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    verbose_arg(p)
    p.set_defaults(func=cmd_plan)

    p = subparsers.add_parser("explain", help="what differs between two evaluations: provenance, then scores")
    p.add_argument("eval_a", metavar="ID_A")
    p.add_argument("eval_b", metavar="ID_B")
    p.add_argument("--store", metavar="DSN", help="chdb:///path or http(s)://... (BUDEVAL_STORE_DSN)")
    p.add_argument("--json", action="store_true", help="the differences as JSON")
    verbose_arg(p)
    p.set_defaults(func=cmd_explain)


def _read_request(where: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if where == "-" else Path(where).read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read {where}: {exc.strerror or exc}", field="request") from None


#: Log level of plan and explain: they start nothing and report a failure as their one error line, so neither their
#: own log lines nor a driver's (urllib3's retries, clickhouse-connect's exceptions) may come before it.
QUIET = "CRITICAL"


def cmd_plan(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from budeval.engine.catalog import load_suites
    from budeval.service.plan import NO_STORE_YET, plan_request, rejection_text, render_text

    out = out or sys.stdout
    configure_logs(QUIET)
    settings = Settings.from_env()
    body = _read_request(args.request)
    suites = load_suites(settings.suites_path)
    if args.no_store:
        plan = plan_request(body, settings, suites, None)
    else:
        try:  # a plan creates no store: one never created has nothing to reuse (an existing one is brought up to date)
            with reading_store(args, create=False, log_level=QUIET) as store:
                plan = plan_request(body, settings, suites, NO_STORE_YET if store is None else store)
        except BudevalError as exc:
            print(f"budeval: warning: reuse not checked: {exc}", file=sys.stderr)
            plan = plan_request(body, settings, suites, None)
    if args.json:
        out.write(json.dumps(plan.document(), indent=2) + "\n")
    elif plan.valid:
        out.write(render_text(plan) + "\n")
    if not plan.valid:
        print(f"budeval: error: rejected: {rejection_text(plan)}", file=sys.stderr)
        return 1
    return 0


def cmd_explain(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from budeval.storage.explain import explain, render_explanation

    out = out or sys.stdout
    with reading_store(args, create=False, log_level=QUIET) as store:
        if store is None:  # a fresh install: explain reads, it does not create a store
            raise NotFoundError(f"no evaluation {args.eval_a!r} in the store: nothing was stored yet")
        records = [store.get_evaluation(e) for e in (args.eval_a, args.eval_b)]
        for eval_id, record in zip((args.eval_a, args.eval_b), records, strict=True):
            if record is None:
                raise NotFoundError(f"no evaluation {eval_id!r} in the store")
        rows = store.compare(args.eval_a, args.eval_b)
    doc = explain(records[0], records[1], rows)  # type: ignore[arg-type]
    if args.json:
        out.write(json.dumps(doc, indent=2, default=str) + "\n")
    else:
        out.write(render_explanation(doc) + "\n")
    return 0
