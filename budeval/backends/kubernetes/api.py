"""A thin JSON layer over ``kubernetes.client.ApiClient``: raw dicts in and out, API errors as budeval errors.

Raw JSON instead of the generated models: the watcher handles thousands of events, and the classifier reads a few
fields; deserialising every object into models would cost CPU for nothing. Every request goes through
``ApiClient.call_api`` so that a counting client (benchmarks) sees each one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import urllib3
from kubernetes import client as k8s

from budeval.config import default
from budeval.errors import BackendUnavailableError, BudevalError, ConflictError, NotFoundError, TerminalError
from budeval.errors import ValidationError as BudevalValidationError

Json = dict[str, Any]
#: Connect and read timeouts of ordinary requests, seconds (settings ``kube_connect_timeout_s`` /
#: ``kube_read_timeout_s``); a watch sets its own read timeout.
REQUEST_TIMEOUT = (float(default("kube_connect_timeout_s")), float(default("kube_read_timeout_s")))


class AlreadyExists(BudevalError):
    """Internal: a create hit an existing object (409 AlreadyExists)."""


def _reason(exc: k8s.ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        message = str(body.get("message") or exc.reason or "")
    except (ValueError, AttributeError):
        message = str(exc.reason or "")
    return message[:300]


def translate(exc: Exception, what: str) -> BudevalError:
    """The budeval error for a failed API call: 5xx/429/connection problems are transient, the rest terminal."""
    if isinstance(exc, k8s.ApiException):
        status = int(exc.status or 0)
        message = f"kubernetes API: {what}: {status} {_reason(exc)}"
        if status == 404:
            return NotFoundError(message)
        if status == 409:
            body = exc.body or ""
            if "AlreadyExists" in str(body):
                return AlreadyExists(message)
            return ConflictError(message)
        if status == 422 or status == 400:
            return BudevalValidationError(message)
        if status in (401, 403):
            return TerminalError(message + " (check the service account's RBAC)")
        if status == 0 or status == 429 or status >= 500 or status == 410:
            return BackendUnavailableError(message)
        return TerminalError(message)
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError, TimeoutError)):
        return BackendUnavailableError(f"kubernetes API unreachable: {what}: {type(exc).__name__}")
    if isinstance(exc, BudevalError):
        return exc
    return BackendUnavailableError(f"kubernetes API: {what}: {type(exc).__name__}")


class JsonApi:
    """GET/POST/PATCH/DELETE of API paths with JSON bodies; watch streams as an iterator of events."""

    def __init__(self, api: k8s.ApiClient, timeouts_s: tuple[float, float] = REQUEST_TIMEOUT) -> None:
        """``timeouts_s``: (connect, read) seconds of ordinary requests; a watch connects within the first."""
        self.api = api
        self.timeouts_s = timeouts_s

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: Any = None,
        accept: str = "application/json",
    ) -> urllib3.HTTPResponse:
        headers = {"Accept": accept, "Content-Type": content_type}
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        response: urllib3.HTTPResponse = self.api.call_api(
            path,
            method,
            query_params=params,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
            _request_timeout=self.timeouts_s if timeout is None else timeout,
        )
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Json:
        try:
            response = self._call(method, path, query=query, body=body, content_type=content_type, accept=accept)
            data = response.data
        except Exception as exc:
            raise translate(exc, what) from None
        try:
            parsed = json.loads(data or b"{}")
        except ValueError:
            raise BackendUnavailableError(f"kubernetes API: {what}: answer is not JSON") from None
        if not isinstance(parsed, dict):
            raise BackendUnavailableError(f"kubernetes API: {what}: answer is not a JSON object")
        return parsed

    def text(self, path: str, *, what: str, query: dict[str, Any] | None = None) -> str:
        try:
            response = self._call("GET", path, query=query)
            data: bytes = response.data
        except Exception as exc:
            raise translate(exc, what) from None
        return data.decode("utf-8", errors="replace")

    def watch(
        self, path: str, *, what: str, query: dict[str, Any], timeout_s: float
    ) -> Iterator[Json]:
        """Yields watch events (``{"type": ..., "object": ...}``) until the server ends the stream."""
        q = dict(query, watch="true", timeoutSeconds=int(timeout_s), allowWatchBookmarks="true")
        try:
            response = self._call("GET", path, query=q, timeout=(self.timeouts_s[0], timeout_s + 30.0))
        except Exception as exc:
            raise translate(exc, what) from None
        buffer = b""
        try:
            for chunk in response.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        if isinstance(event, dict):
                            yield event
        except ValueError:
            raise BackendUnavailableError(f"kubernetes API: {what}: garbled watch event") from None
        except Exception as exc:
            raise translate(exc, what) from None
        finally:
            response.release_conn()


def jobs_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    return base if name is None else f"{base}/{name}"


def core_path(namespace: str, plural: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/{plural}"
    return base if name is None else f"{base}/{name}"


def owned_by_job(pod: Json, job: Json) -> bool:
    """Whether ``pod`` is one of ``job``'s: its ``controller-uid`` label (set by the Job controller) is the Job's uid,
    or it has none (pods made by other means under the same run labels count as the run's)."""
    uid = ((pod.get("metadata") or {}).get("labels") or {}).get("controller-uid")
    return uid is None or uid == (job.get("metadata") or {}).get("uid")


def job_pods(api: JsonApi, namespace: str, job: Json, selector: str | None = None) -> list[Json]:
    """The pods of ``job`` as the API lists them now: those matching ``selector`` (a label selector; default the
    Job's ``controller-uid``) and owned by it (:func:`owned_by_job`). Raises the API's errors (:func:`translate`)."""
    uid = (job.get("metadata") or {}).get("uid")
    listing = api.request("GET", core_path(namespace, "pods"), what="list pods",
                          query={"labelSelector": selector or f"controller-uid={uid}"})
    return [p for p in listing.get("items") or [] if owned_by_job(p, job)]
