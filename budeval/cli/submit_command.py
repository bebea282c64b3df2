"""``budeval submit``: publish a request on the request topic, the same path as any producer, and (``--wait``)
follow the events topic until the evaluation ends.

The request is a CloudEvent published through the Dapr HTTP publish API: daprd when ``DAPR_HTTP_PORT`` /
``DAPR_HTTP_ENDPOINT`` is set, else the embedded sidecar of the running ``budeval serve`` (``{data_dir}/serve.json``).
When neither answers and no service of this data dir is starting, it fails within ``client_unreachable_s`` seconds
(instead of waiting for ``--timeout``); a service that is starting is waited for, up to ``--timeout``. ``--wait``
follows the events topic through the embedded sidecar's message log. Timeouts and the poll interval are settings
(``client_*``, ``sidecar_probe_timeout_s``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from budeval.cli.event_view import print_event, print_progress
from budeval.cli.locate import api_url, dapr_headers, service_starting, sidecar_url, stale_serve_pid
from budeval.config import Settings
from budeval.errors import TransientError, ValidationError
from budeval.events.cloudevents import kind_of, make_request_event, to_json
from budeval.jsonlimits import TooDeepError, check_depth
from budeval.service.intake import MAX_REQUEST_BYTES

#: Kinds of event that end an evaluation.
FINAL_KINDS = frozenset({"completed", "failed", "cancelled", "rejected"})
#: Workflow states of an existing evaluation that will still publish its final event.
_STILL_RUNNING = frozenset({"PENDING", "RUNNING", "SUSPENDED", "STALLED"})


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("submit", help="publish an evaluation request on the request topic")
    p.add_argument("file", help="request JSON file, or - for stdin")
    p.add_argument("--wait", action="store_true", help="follow the events topic until the evaluation ends")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds to wait (for a starting service, and with --wait for the end)")
    p.add_argument("--json", action="store_true", help="print the final event as JSON")
    p.add_argument("--force", action="store_true",
                   help="set force: true (no reuse of earlier work; re-run a failed or cancelled eval id)")
    p.set_defaults(func=_submit)


def _read_request(name: str, max_depth: int) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"cannot read {name}: {exc}") from None
    where = "<stdin>" if name == "-" else name
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_REQUEST_BYTES:
        raise ValidationError(f"{where}: the request is {size} bytes; the service takes at most {MAX_REQUEST_BYTES}")
    try:
        check_depth(text, max_depth)
        doc = json.loads(text)
    except TooDeepError as exc:
        raise ValidationError(f"{where}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{where}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise ValidationError(f"{where}: a request is a JSON object, got {type(doc).__name__}")
    return doc


def _wait_ready(settings: Settings, deadline: float) -> str:
    """The sidecar URL to publish to, once the service (embedded) or daprd (external) answers.

    Waits until ``deadline`` only while a service of this data dir is starting (its ``serve.json`` names a live
    process); when nothing is found or nothing answers, it gives up after ``client_unreachable_s`` seconds with a
    :class:`TransientError` that says what it looked for."""
    explicit = bool(settings.dapr_http_endpoint or settings.dapr_http_port)
    grace = time.monotonic() + settings.client_unreachable_s
    stale = stale_serve_pid(settings)
    found = (f"{settings.data_dir / 'serve.json'} is stale: process {stale} is gone" if stale is not None
             else f"no {settings.data_dir / 'serve.json'}")
    last = f"no running service found ({found}): start `budeval serve`, or set DAPR_HTTP_PORT for daprd"
    while True:
        url = sidecar_url(settings)
        if url is not None:
            try:
                if explicit:
                    probe, wait_s = f"{url}/v1.0/healthz/outbound", settings.sidecar_probe_timeout_s
                else:
                    probe, wait_s = f"{api_url(settings)}/readyz", settings.client_ready_timeout_s
                ok = httpx.get(probe, timeout=wait_s).is_success
                if ok:
                    return url
                last = "the service is not ready yet"
            except httpx.HTTPError as exc:
                where = url if explicit else api_url(settings)
                last = f"nothing answers at {where} ({type(exc).__name__})"
        now = time.monotonic()
        starting = not explicit and service_starting(settings)
        if now >= deadline or (now >= grace and not starting):
            raise TransientError(f"gave up waiting: {last}")
        time.sleep(settings.client_poll_s)


def publish_request(url: str, settings: Settings, request: dict[str, Any], event_id: str) -> None:
    """Publish ``request`` as a CloudEvent; refused here (nothing published) if the event exceeds the intake limit."""
    event = make_request_event(request, event_id)
    body = to_json(event).encode("utf-8")
    if len(body) > MAX_REQUEST_BYTES:
        raise ValidationError(f"the request event is {len(body)} bytes; the service takes at most {MAX_REQUEST_BYTES}")
    target = f"{url}/v1.0/publish/{settings.pubsub_name}/{settings.request_topic}"
    headers = {"content-type": "application/cloudevents+json", **dapr_headers(settings)}
    try:
        answer = httpx.post(target, content=body, headers=headers, timeout=settings.client_timeout_s)
    except httpx.HTTPError as exc:
        raise TransientError(f"publish to {target} failed: {type(exc).__name__}") from None
    if not answer.is_success:
        raise TransientError(f"publish to {target} failed: HTTP {answer.status_code} {answer.text[:200]}")


def _matches(event: dict[str, Any], eval_id: str | None, request_id: str) -> bool:
    data = event.get("data")
    if not isinstance(data, dict):
        return False
    if data.get("request_id") == request_id:
        return True
    return eval_id is not None and data.get("eval_id") == eval_id


def last_event_seq(url: str, settings: Settings) -> int | None:
    """The newest sequence number of the events topic's log (embedded sidecar), None where there is none (daprd)."""
    try:
        answer = httpx.get(f"{url}/v1.0-alpha1/messages/last", params={"topic": settings.events_topic},
                           timeout=settings.client_events_timeout_s, headers=dapr_headers(settings))
        return int(answer.json()["seq"]) if answer.is_success else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def follow_events(
    url: str, settings: Settings, eval_id: str | None, request_id: str, deadline: float, after: int = 0
) -> dict[str, Any]:
    """The first final event for this request in the events topic's log after ``after`` (embedded sidecar only)."""
    topic = settings.events_topic
    while True:
        try:
            answer = httpx.get(
                f"{url}/v1.0-alpha1/messages", params={"topic": topic, "after": after},
                timeout=settings.client_events_timeout_s, headers=dapr_headers(settings),
            )
        except httpx.HTTPError as exc:
            raise TransientError(f"reading the events topic failed: {type(exc).__name__}") from None
        if answer.status_code == 404:
            raise ValidationError("--wait needs the embedded sidecar's message log (not available under daprd)")
        if not answer.is_success:
            raise TransientError(f"reading the events topic failed: HTTP {answer.status_code}")
        for seq, event in _messages(answer.json()):
            after = max(after, seq)
            if not _matches(event, eval_id, request_id):
                continue
            if kind_of(event) in FINAL_KINDS:
                return event
            if kind_of(event) == "duplicate":
                status = str((event.get("data") or {}).get("workflow_status") or "")
                if status in _STILL_RUNNING:
                    print(f"  duplicate: {eval_id} is running; following it", file=sys.stderr)
                    continue
                return _earlier_final(url, settings, eval_id, seq) or event
            print_progress(event)
        if time.monotonic() >= deadline:
            raise TransientError(f"timed out waiting for the end of {eval_id or request_id}")
        time.sleep(settings.client_poll_s)


def _earlier_final(url: str, settings: Settings, eval_id: str | None, before: int) -> dict[str, Any] | None:
    """The newest final event (not a rejection) of the evaluation ``eval_id`` published before ``before``."""
    found: dict[str, Any] | None = None
    after = 0
    while eval_id is not None and after < before:
        answer = httpx.get(f"{url}/v1.0-alpha1/messages",
                           params={"topic": settings.events_topic, "after": after, "limit": 10000},
                           timeout=settings.client_timeout_s, headers=dapr_headers(settings))
        page = _messages(answer.json()) if answer.is_success else []
        if not page:
            break
        for seq, event in page:
            after = max(after, seq)
            data = event.get("data") or {}
            if seq < before and data.get("eval_id") == eval_id and kind_of(event) in FINAL_KINDS - {"rejected"}:
                found = event
    return found


def _messages(body: Any) -> list[tuple[int, dict[str, Any]]]:
    """``[(seq, cloudevent)]`` from the message log answer (a list, or an object with ``messages``)."""
    items = body.get("messages", []) if isinstance(body, dict) else body
    out: list[tuple[int, dict[str, Any]]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        seq = int(item.get("seq", 0))
        event = item.get("event", item.get("data", item))
        if isinstance(event, str):
            try:
                event = json.loads(event)
            except ValueError:
                continue
        if isinstance(event, dict):
            out.append((seq, event))
    return out


def _submit(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    request = _read_request(args.file, settings.max_json_depth)
    if args.force:
        request["force"] = True
    return submit_request(settings, request, wait=args.wait, timeout=args.timeout, as_json=args.json)


def submit_request(settings: Settings, request: dict[str, Any], *, wait: bool, timeout: float, as_json: bool) -> int:
    """Publish ``request`` on the request topic; with ``wait``, follow the events until it ends and print the final
    event (``as_json``: as JSON). Exit code: 0 when it completed (or was reused), else 1. Raises TransientError when
    no service or sidecar answers within ``client_unreachable_s``."""
    deadline = time.monotonic() + max(1.0, timeout)
    url = _wait_ready(settings, deadline)
    request_id = f"req-{uuid.uuid4().hex}"
    # Only events after this publish count: an earlier evaluation under the same eval id must not answer --wait.
    after = last_event_seq(url, settings) if wait else None
    if wait and after is None:
        raise ValidationError("--wait needs the embedded sidecar's message log (not available under daprd)")
    publish_request(url, settings, request, request_id)
    raw_id = request.get("eval_id")
    eval_id = raw_id if isinstance(raw_id, str) else None
    print(f"published {eval_id or '(no eval_id)'} on {settings.pubsub_name}/{settings.request_topic}", file=sys.stderr)
    if not wait:
        return 0
    event = follow_events(url, settings, eval_id, request_id, deadline, after or 0)
    if as_json:
        print(json.dumps(event, indent=2))
    else:
        print_event(event)
    status = (event.get("data") or {}).get("status")
    return 0 if kind_of(event) == "completed" and status in ("completed", "reused") else 1
