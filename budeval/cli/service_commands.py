"""CLI of the service: ``serve`` runs it, ``submit`` publishes a request on the topic, ``status``/``cancel`` use HTTP.

``submit`` takes the same path as any producer: a CloudEvent published through the Dapr HTTP publish API (daprd at
``DAPR_HTTP_PORT``, or the embedded sidecar of the running ``budeval serve``, found in ``{data_dir}/serve.json``).
``--wait`` follows the events topic through the embedded sidecar's message log until the evaluation ends. Timeouts
and the poll interval are settings (``client_*``, ``sidecar_probe_timeout_s``).
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

from budeval.config import Settings, reveal
from budeval.errors import BudevalError, NotFoundError, TransientError, ValidationError
from budeval.events.cloudevents import kind_of, make_request_event, to_json
from budeval.jsonlimits import TooDeepError, check_depth
from budeval.schemas.results import RunUsage
from budeval.service.intake import MAX_REQUEST_BYTES

#: Kinds of event that end an evaluation.
FINAL_KINDS = frozenset({"completed", "failed", "cancelled", "rejected"})
#: Workflow states of an existing evaluation that will still publish its final event.
_STILL_RUNNING = frozenset({"PENDING", "RUNNING", "SUSPENDED", "STALLED"})


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("serve", help="run the service (Dapr app, HTTP API, workflow worker)")
    p.set_defaults(func=_serve)

    p = subparsers.add_parser("submit", help="publish an evaluation request on the request topic")
    p.add_argument("file", help="request JSON file, or - for stdin")
    p.add_argument("--wait", action="store_true", help="follow the events topic until the evaluation ends")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (readiness and --wait)")
    p.add_argument("--json", action="store_true", help="print the final event as JSON")
    p.add_argument("--force", action="store_true",
                   help="set force: true (no reuse of earlier work; re-run a failed or cancelled eval id)")
    p.set_defaults(func=_submit)

    p = subparsers.add_parser("status", help="status, scores and failures of an evaluation (HTTP API)")
    p.add_argument("eval_id")
    p.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    p.set_defaults(func=_status)

    p = subparsers.add_parser("cancel", help="cancel an evaluation (HTTP API); waits until it has ended")
    p.add_argument("eval_id")
    p.add_argument("--no-wait", action="store_true", help="return once the workflow has the cancel request")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the evaluation's end")
    p.set_defaults(func=_cancel)


# -- where things are ----------------------------------------------------------------------------------------------
def _serve_info(settings: Settings) -> dict[str, Any]:
    from budeval.service.runtime import read_serve_file

    return read_serve_file(settings.data_dir) or {}


def api_url(settings: Settings) -> str:
    explicit = settings.api_url.strip()
    if explicit:
        return explicit.rstrip("/")
    info = _serve_info(settings)
    return str(info.get("api_url") or f"http://127.0.0.1:{settings.port}").rstrip("/")


def api_token(settings: Settings) -> str | None:
    from budeval.service.auth import load_api_token
    from budeval.service.runtime import TOKEN_FILE

    token = load_api_token(settings)
    if token:
        return token
    local = settings.data_dir / TOKEN_FILE
    return local.read_text(encoding="utf-8").strip() if local.is_file() else None


def sidecar_url(settings: Settings) -> str | None:
    """The Dapr HTTP API: ``DAPR_HTTP_ENDPOINT``/``DAPR_HTTP_PORT`` if set, else the running service's sidecar."""
    endpoint = settings.dapr_http_endpoint.strip()
    if endpoint:
        return endpoint.rstrip("/")
    port = settings.dapr_http_port
    if port:
        return f"http://127.0.0.1:{port}"
    info = _serve_info(settings)
    return f"http://127.0.0.1:{info['dapr_http_port']}" if info.get("dapr_http_port") else None


def _dapr_headers(settings: Settings) -> dict[str, str]:
    token = (reveal(settings.dapr_api_token) or "").strip()
    return {"dapr-api-token": token} if token else {}


# -- commands ------------------------------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    from budeval.service.runtime import serve

    return serve()


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
    """The sidecar URL to publish to, once the service (embedded) or daprd (external) answers."""
    explicit = bool(settings.dapr_http_endpoint or settings.dapr_http_port)
    last = "no running service found (start `budeval serve`)"
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
                last = f"the service does not answer ({type(exc).__name__})"
        if time.monotonic() >= deadline:
            raise TransientError(f"gave up waiting: {last}")
        time.sleep(settings.client_poll_s)


def publish_request(url: str, settings: Settings, request: dict[str, Any], event_id: str) -> None:
    """Publish ``request`` as a CloudEvent; refused here (nothing published) if the event exceeds the intake limit."""
    event = make_request_event(request, event_id)
    body = to_json(event).encode("utf-8")
    if len(body) > MAX_REQUEST_BYTES:
        raise ValidationError(f"the request event is {len(body)} bytes; the service takes at most {MAX_REQUEST_BYTES}")
    target = f"{url}/v1.0/publish/{settings.pubsub_name}/{settings.request_topic}"
    headers = {"content-type": "application/cloudevents+json", **_dapr_headers(settings)}
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
                           timeout=settings.client_events_timeout_s, headers=_dapr_headers(settings))
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
                timeout=settings.client_events_timeout_s, headers=_dapr_headers(settings),
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
            _print_progress(event)
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
                           timeout=settings.client_timeout_s, headers=_dapr_headers(settings))
        page = _messages(answer.json()) if answer.is_success else []
        if not page:
            break
        for seq, event in page:
            after = max(after, seq)
            data = event.get("data") or {}
            if seq < before and data.get("eval_id") == eval_id and kind_of(event) in FINAL_KINDS - {"rejected"}:
                found = event
    return found


def _print_progress(event: dict[str, Any]) -> None:
    """``started``/``progress`` lines on stderr while waiting (stdout keeps only the result)."""
    data = event.get("data") or {}
    kind = kind_of(event)
    if kind == "progress":
        state = "ok" if data.get("ok") else f"failed: {data.get('error') or data.get('phase')}"
        print(f"  run {data.get('run_id')} {','.join(data.get('datasets') or [])}: {state}", file=sys.stderr)
    elif kind == "started":
        print(f"  started: {len(data.get('runs') or [])} run(s)", file=sys.stderr)


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


def _print_event(event: dict[str, Any]) -> None:
    data = event.get("data") or {}
    status = data.get("status", kind_of(event))
    print(f"{data.get('eval_id') or '-'}: {status}")
    _print_details(data)


def _print_details(data: dict[str, Any]) -> None:
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


def _submit(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    request = _read_request(args.file, settings.max_json_depth)
    if args.force:
        request["force"] = True
    return submit_request(settings, request, wait=args.wait, timeout=args.timeout, as_json=args.json)


def submit_request(settings: Settings, request: dict[str, Any], *, wait: bool, timeout: float, as_json: bool) -> int:
    """Publish ``request`` on the request topic; with ``wait``, follow the events until it ends and print the final
    event (``as_json``: as JSON). Exit code: 0 when it completed (or was reused), else 1."""
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
        _print_event(event)
    status = (event.get("data") or {}).get("status")
    return 0 if kind_of(event) == "completed" and status in ("completed", "reused") else 1


def api_call(method: str, path: str) -> dict[str, Any]:
    """One call of the service's HTTP API (``serve.json``'s address, the API token); the answer's JSON object.
    Raises NotFoundError (404), ValidationError (401), TransientError (no answer), BudevalError (other errors)."""
    return _api(method, path)


def _api(method: str, path: str) -> dict[str, Any]:
    settings = Settings.from_env()
    base = api_url(settings)
    token = api_token(settings)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        answer = httpx.request(method, f"{base}{path}", headers=headers, timeout=settings.client_timeout_s)
    except httpx.HTTPError as exc:
        raise TransientError(f"the service at {base} does not answer ({type(exc).__name__})") from None
    try:
        body: Any = answer.json()
    except ValueError:
        body = {"message": answer.text[:300]}
    if answer.status_code == 404:
        raise NotFoundError(str(body.get("message", "not found")))
    if answer.status_code == 401:
        raise ValidationError("the service refused the token (set BUDEVAL_API_TOKEN)")
    if not answer.is_success:
        raise BudevalError(f"HTTP {answer.status_code}: {body.get('message') or body}")
    return body if isinstance(body, dict) else {"result": body}


def _status(args: argparse.Namespace) -> int:
    body = _api("GET", f"/evals/{args.eval_id}")
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    workflow = body.get("workflow") or {}
    print(f"{body['eval_id']}: {body['status']} (workflow: {workflow.get('status', '-')})")
    _print_details(_status_view(body))
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
    return view


def _cancel(args: argparse.Namespace) -> int:
    """Ask the workflow to cancel; then (unless ``--no-wait``) wait for the evaluation's end and print it: exit 0
    when it ended ``cancelled``, 1 when it finished otherwise first (a finalize already under way wins)."""
    poll_s = Settings.from_env().client_poll_s
    body = _api("DELETE", f"/evals/{args.eval_id}")
    status = str(body.get("status"))
    deadline = time.monotonic() + max(1.0, args.timeout)
    while status == "cancel_requested" and not args.no_wait:
        if time.monotonic() >= deadline:
            raise TransientError(f"timed out waiting for {args.eval_id} to end (cancel requested)")
        time.sleep(poll_s)
        current = str(_api("GET", f"/evals/{args.eval_id}").get("status"))
        if current not in ("pending", "running"):
            status = current
    print(f"{body.get('eval_id')}: {status}" + (" (already)" if body.get("already") else ""))
    return 0 if status in ("cancelled", "cancel_requested") else 1
