"""Helpers for the service tests: run an app under real uvicorn on a free port, and small stand-ins.

Stand-ins are used only where the test is about the service's own logic (which answer, which event, how many
starts); the real sidecar, store and backend are used where they exist (see test_serve_embedded.py).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from budeval.backends.base import RunFinishedCallback, RunSpec, RunState
from budeval.storage.base import EvaluationRecord, ScoreRow
from tests.support import wait_until


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """The app on real HTTP (uvicorn, loopback, free port); yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


class Status(Enum):
    RUNNING = 1
    COMPLETED = 2
    FAILED = 3
    TERMINATED = 4
    PENDING = 5


@dataclass
class FakeState:
    instance_id: str
    runtime_status: Status
    serialized_output: str | None = None
    serialized_input: str | None = None
    created_at: Any = None
    last_updated_at: Any = None
    failure_details: Any = None


class StandInWorkflows:
    """Records what the service asks of the workflow engine; ``down`` makes every call fail like gRPC UNAVAILABLE."""

    def __init__(self) -> None:
        self.instances: dict[str, FakeState] = {}
        self.scheduled: list[tuple[str, str, dict[str, Any]]] = []
        self.terminated: list[tuple[str, bool]] = []
        self.raised: list[tuple[str, str, Any]] = []
        self.purged: list[str] = []
        self.down = False
        self._lock = threading.Lock()

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("sidecar unavailable")

    def get_workflow_state(self, instance_id: str, *, fetch_payloads: bool = True) -> Any:
        self._check()
        return self.instances.get(instance_id)

    def schedule_new_workflow(self, workflow: Any, *, input: Any = None, instance_id: str | None = None) -> str:
        self._check()
        assert instance_id is not None
        with self._lock:
            if instance_id in self.instances:
                raise RuntimeError(f"an instance with ID '{instance_id}' already exists")
            self.scheduled.append((str(workflow), instance_id, input))
            self.instances[instance_id] = FakeState(instance_id, Status.RUNNING, serialized_input=json.dumps(input))
        return instance_id

    def raise_workflow_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        self._check()
        self.raised.append((instance_id, event_name, data))

    def purge_workflow(self, instance_id: str, recursive: bool = True) -> None:
        self._check()
        self.purged.append(instance_id)
        self.instances.pop(instance_id, None)

    def terminate_workflow(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        self._check()
        self.terminated.append((instance_id, recursive))
        self.instances[instance_id].runtime_status = Status.TERMINATED


class StandInStore:
    def __init__(self) -> None:
        self.records: dict[str, EvaluationRecord] = {}
        self.scores: dict[str, list[ScoreRow]] = {}
        self.down = False

    def ping(self) -> None:
        if self.down:
            raise ConnectionError("store down")

    def get_evaluation(self, eval_id: str) -> EvaluationRecord | None:
        self.ping()
        return self.records.get(eval_id)

    def record_evaluation(self, record: EvaluationRecord) -> None:
        self.records[record.eval_id] = record

    def results(self, eval_id: str) -> list[ScoreRow]:
        return list(self.scores.get(eval_id, []))

    def clear_results(self, eval_id: str) -> None:
        self.scores.pop(eval_id, None)

    def usage(self, eval_id: str) -> dict[str, Any]:
        return {}  # no endpoint runs here

    def evaluations_to_tend(self, limit: int = 100) -> list[EvaluationRecord]:
        return [r for r in self.records.values() if r.status in ("pending", "running") or r.archive_pending][:limit]

    def leaderboard(self, dataset: str | None = None, metric: str | None = None, mode: str = "latest",
                    limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        rows = [
            {"model": s.model, "dataset": s.dataset, "metric": s.metric, "score": s.score, "eval_id": s.eval_id}
            for rows in self.scores.values() for s in rows
            if (dataset is None or s.dataset == dataset) and (metric is None or s.metric == metric)
        ]
        rows.sort(key=lambda r: -float(r["score"] or 0))
        return rows[offset: offset + limit]

    def compare(self, a: str, b: str) -> list[dict[str, Any]]:
        left = {(s.dataset, s.metric): s.score for s in self.scores.get(a, [])}
        right = {(s.dataset, s.metric): s.score for s in self.scores.get(b, [])}
        return [{"dataset": d, "metric": m, "a": left.get((d, m)), "b": right.get((d, m))} for d, m in sorted(left)]

    def flips(self, a: str, b: str, limit: int = 100) -> list[dict[str, Any]]:
        return []

    def close(self) -> None:
        pass


@dataclass
class StandInBackend:
    name: str = "stand-in"
    submitted: list[RunSpec] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def submit(self, spec: RunSpec) -> RunState:
        self.submitted.append(spec)
        return RunState(eval_id=spec.eval_id, run_id=spec.run_id, phase="running")

    def get(self, eval_id: str, run_id: str) -> RunState:
        return RunState(eval_id=eval_id, run_id=run_id, phase="unknown")

    def cancel(self, eval_id: str) -> None:
        self.cancelled.append(eval_id)

    def cleanup(self, eval_id: str, run_id: str) -> None:
        pass

    def work_dir(self, eval_id: str, run_id: str) -> Path:
        return Path("/nonexistent") / eval_id / run_id

    def watch(self, on_finished: RunFinishedCallback) -> Any:
        class _W:
            def stop(self) -> None:
                pass

        return _W()


#: The service tests wait up to a minute by default.
wait_until = partial(wait_until, timeout=60.0)


def get(url: str, token: str | None = None, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url, headers=headers, timeout=30, **kw)
