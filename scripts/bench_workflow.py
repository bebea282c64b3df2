#!/usr/bin/env python3
"""Benchmark of the D2 embedded sidecar (budeval.sidecar.embedded) under the real evaluation workflow.

Real parts: the unmodified Dapr SDK worker and client (``build_runtime`` from budeval/workflow/worker.py with the real
activities), the D2 sidecar (SQLite state), the chDB store (``open_store``), the folder archive (``open_archive``), the
OpenCompass result parser, completion events published through the sidecar (``DaprPublisher``). Only the job is
fake: its run "finishes at once" when submitted (the fixture tests/fixtures/opencompass/qa_chat is copied into the
work dir), the submit activity still reports it as running, so the run's child workflow waits as for a real job.

Both waiting modes run in ONE run, interleaved, with at most ``--concurrency`` evaluations in flight:
  event  the backend's watch calls the service's real ``raise_run_finished`` (RUN_FINISHED_EVENT into the child);
  poll   the backend never raises the event; the durable-timer poll (first after ``--poll-s``) finds the run done.
Latency: from the run's finish (the fixture copied) to ``published_at`` of the ``completed`` event in the sidecar's
topic log. Throughput: evaluations completed per second of wall time.

Last line exactly: ``evals_per_s=<float> p50_ms=<int> p99_ms=<int> poll_p50_ms=<int>`` (event-driven p50/p99).
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from budeval.backends.base import RunSpec, RunState  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "opencompass" / "qa_chat"


class InstantRuns:
    """A JobBackend whose runs are done the moment they are submitted (a real OpenCompass output folder appears)."""

    name = "instant"

    def __init__(self, root: Path, silent: Callable[[str], bool]) -> None:
        self.root = root
        self.silent = silent
        self.finished_at: dict[str, float] = {}
        self._done: queue.Queue[RunState] = queue.Queue()
        self._lock = threading.Lock()

    def work_dir(self, eval_id: str, run_id: str) -> Path:
        return self.root / eval_id / run_id

    def submit(self, spec: RunSpec) -> RunState:
        folder = self.work_dir(spec.eval_id, spec.run_id)
        if not folder.is_dir():
            shutil.copytree(FIXTURE, folder, dirs_exist_ok=True)
        with self._lock:
            self.finished_at.setdefault(spec.eval_id, time.time())
        if not self.silent(spec.eval_id):
            self._done.put(RunState(eval_id=spec.eval_id, run_id=spec.run_id, phase="succeeded"))
        return RunState(eval_id=spec.eval_id, run_id=spec.run_id, phase="running")

    def get(self, eval_id: str, run_id: str) -> RunState:
        phase = "succeeded" if self.work_dir(eval_id, run_id).is_dir() else "unknown"
        return RunState(eval_id=eval_id, run_id=run_id, phase=phase)

    def cancel(self, eval_id: str) -> None:
        return None

    def cleanup(self, eval_id: str, run_id: str) -> None:
        return None

    def watch(self, on_finished: Callable[[RunState], None]) -> Any:
        stopped = threading.Event()

        def pump() -> None:
            while not stopped.is_set():
                try:
                    on_finished(self._done.get(timeout=0.1))
                except queue.Empty:
                    continue

        thread = threading.Thread(target=pump, name="instant-watch", daemon=True)
        thread.start()

        class _Watch:
            def stop(self) -> None:
                stopped.set()
                thread.join(timeout=5)

        return _Watch()


class TimedStore:
    """Forwards to the store and adds up the time spent inside each method (where a slow run spends its time)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.spent: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                with self._lock:
                    self.spent.setdefault(name, []).append(time.perf_counter() - start)

        return timed


class MemoryStore:
    """Diagnostic only (``--store memory``): a ResultStore in a dict, to see the sidecar's and SDK's own ceiling."""

    def __init__(self) -> None:
        self.records: dict[str, Any] = {}

    def migrate(self) -> list[str]:
        return []

    def record_evaluation(self, record: Any) -> None:
        self.records[record.eval_id] = record

    def get_evaluation(self, eval_id: str) -> Any:
        return self.records.get(eval_id)

    def find_reusable(self, params_hash: str) -> Any:
        return None

    def store_run(self, eval_id: str, run_id: str, parsed: Any) -> Any:
        from budeval.storage.base import StoreReport

        return StoreReport(metrics=0, predictions=0)

    def results(self, eval_id: str) -> list[Any]:
        return []

    def close(self) -> None:
        return None


class SidecarProcess:
    """``python -m budeval.sidecar`` as its own process (like daprd next to the app): a second core for gRPC."""

    def __init__(self, state: Path) -> None:
        import json
        import subprocess

        self.proc = subprocess.Popen([sys.executable, "-m", "budeval.sidecar", "--state", str(state),
                                      "--log-level", "WARNING"], stdout=subprocess.PIPE, cwd=ROOT)
        assert self.proc.stdout is not None
        ports = json.loads(self.proc.stdout.readline())
        self.grpc_port, self.http_port = int(ports["grpc_port"]), int(ports["http_port"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _request(eval_id: str) -> dict[str, Any]:
    return {"eval_id": eval_id, "model": {"name": "bench", "source": {"type": "huggingface", "path": "/models/bench"}},
            "datasets": ["tiny_qa"], "force": True}


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evals", type=int, default=200, help="event-driven evaluations")
    parser.add_argument("--poll-evals", type=int, default=20, help="timer-poll evaluations (no event raised)")
    parser.add_argument("--poll-s", type=float, default=1.0, help="first poll interval of the fallback")
    parser.add_argument("--concurrency", type=int, default=32, help="evaluations in flight at once")
    parser.add_argument("--threads", type=int, default=32, help="SDK worker thread pools (its default: cpus + 4)")
    parser.add_argument("--store", choices=("chdb", "memory"), default="chdb",
                        help="memory: diagnostic run without ClickHouse (not the benchmark's figure)")
    parser.add_argument("--sidecar-process", action="store_true", help="run the sidecar in its own process")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    from budeval.logs import configure

    configure("WARNING")
    logging.basicConfig(level=logging.ERROR)
    for name in ("durabletask-worker", "durabletask-client", "WorkflowRuntime", "DaprWorkflowClient"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    import httpx

    from budeval.sidecar.embedded import EmbeddedSidecar

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-wf-d2-"))
    work.mkdir(parents=True, exist_ok=True)
    sidecar: Any = SidecarProcess(work / "sidecar.db") if args.sidecar_process else EmbeddedSidecar(
        work / "sidecar.db").start()
    # what `budeval serve` does in embedded mode: the SDK and DaprClient find the sidecar through these
    os.environ.update(DAPR_RUNTIME_HOST="127.0.0.1", DAPR_GRPC_PORT=str(sidecar.grpc_port),
                      DAPR_HTTP_PORT=str(sidecar.http_port))
    for name in ("DAPR_GRPC_ENDPOINT", "DAPR_HTTP_ENDPOINT"):
        os.environ.pop(name, None)

    import dapr.ext.workflow as wf

    from budeval.config import Settings
    from budeval.engine.catalog import load_suites
    from budeval.engine.results import parse_run
    from budeval.events.publisher import DaprPublisher
    from budeval.service.metrics import SerializedStore
    from budeval.service.runtime import raise_run_finished
    from budeval.storage.factory import open_archive, open_store
    from budeval.workflow import names
    from budeval.workflow.activities import Deps
    from budeval.workflow.models import WorkflowInput
    from budeval.workflow.worker import build_runtime

    settings = Settings(data_dir=work, results_root=work / "results")
    raw_store: Any = open_store(settings.resolved_store_dsn()) if args.store == "chdb" else MemoryStore()
    raw_store.migrate()
    backend = InstantRuns(work / "results", silent=lambda eval_id: eval_id.startswith("poll-"))
    publisher = DaprPublisher(settings.pubsub_name)
    timed_store = TimedStore(raw_store)
    deps = Deps(settings=settings, backend=backend, store=SerializedStore(timed_store),  # type: ignore[arg-type]
                archive=open_archive(settings.resolved_archive_url()), publisher=publisher, parse=parse_run,
                suites=load_suites(settings.suites_dir))
    runtime, _ = build_runtime(deps, host="127.0.0.1", port=str(sidecar.grpc_port),
                               maximum_thread_pool_workers=args.threads)
    runtime.start()
    client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
    watch = backend.watch(lambda state: raise_run_finished(client, state))

    # interleave the two modes so both see the same load
    poll_every = max(1, args.evals // max(1, args.poll_evals))
    ids: list[str] = []
    p = 0
    for i in range(args.evals):
        ids.append(f"evt-{i:04d}")
        if i % poll_every == 0 and p < args.poll_evals:
            ids.append(f"poll-{p:04d}")
            p += 1
    ids += [f"poll-{j:04d}" for j in range(p, args.poll_evals)]

    ended: dict[str, tuple[str, float]] = {}
    slots = threading.Semaphore(args.concurrency)
    stop = threading.Event()

    def follow() -> None:
        after = 0
        url = f"http://127.0.0.1:{sidecar.http_port}/v1.0-alpha1/messages"
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                batch = http.get(url, params={"topic": settings.events_topic, "after": after}).json()
                for msg in batch:
                    after = max(after, msg["seq"])
                    kind = str(msg["event"].get("type", "")).rsplit(".", 1)[-1]
                    eval_id = (msg["event"].get("data") or {}).get("eval_id")
                    if kind in ("completed", "partial", "failed", "cancelled") and eval_id and eval_id not in ended:
                        ended[eval_id] = (kind, float(msg["published_at"]))
                        slots.release()
                if not batch:
                    time.sleep(0.01)

    follower = threading.Thread(target=follow, name="follow-events", daemon=True)
    follower.start()
    t0 = time.time()
    for eval_id in ids:
        slots.acquire()
        body = WorkflowInput(request=_request(eval_id), received_at=datetime.now(UTC).isoformat(),  # type: ignore[arg-type]
                             poll_initial_s=args.poll_s, poll_max_s=max(args.poll_s, 5.0))
        client.schedule_new_workflow(names.EVALUATION_WORKFLOW, input=body.model_dump(mode="json"),
                                     instance_id=eval_id)
    deadline = time.monotonic() + 900
    while len(ended) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.02)
    elapsed = max(ended.values(), key=lambda v: v[1])[1] - t0 if ended else float("nan")
    stop.set()
    watch.stop()
    runtime.shutdown()
    client.close()
    publisher.close()
    sidecar.stop()
    raw_store.close()

    not_done = [i for i in ids if i not in ended]
    not_completed = {i: kind for i, (kind, _) in ended.items() if kind != "completed"}
    lat = {mode: [(ended[i][1] - backend.finished_at[i]) * 1000 for i in ids
                  if i.startswith(mode) and i in ended and i in backend.finished_at] for mode in ("evt-", "poll-")}
    print(f"workdir={work}", file=sys.stderr)
    print(f"sidecar={'process' if args.sidecar_process else 'in-process'} store={args.store}")
    print(f"evaluations={len(ids)} ended={len(ended)} not_ended={len(not_done)} not_completed={len(not_completed)} "
          f"elapsed_s={elapsed:.2f} concurrency={args.concurrency}")
    for mode, values in lat.items():
        if values:
            print(f"{mode.rstrip('-')}: n={len(values)} p50={statistics.median(values):.0f} ms "
                  f"p99={_pct(values, 99):.0f} ms max={max(values):.0f} ms")
    for method, took in sorted(timed_store.spent.items()):
        print(f"store.{method}: calls={len(took)} total={sum(took):.2f} s mean={1000 * sum(took) / len(took):.0f} ms",
              file=sys.stderr)
    if not_done or not_completed:
        print(f"FAILED: not ended {not_done[:5]}, not completed {list(not_completed.items())[:5]}", file=sys.stderr)
    evt, poll = lat["evt-"], lat["poll-"]
    print(f"evals_per_s={len(ended) / elapsed:.2f} p50_ms={int(statistics.median(evt)) if evt else -1} "
          f"p99_ms={int(_pct(evt, 99)) if evt else -1} poll_p50_ms={int(statistics.median(poll)) if poll else -1}")
    return 1 if not_done or not_completed else 0


if __name__ == "__main__":
    raise SystemExit(main())
