#!/usr/bin/env python3
"""Benchmark: evaluations through the embedded sidecar with the real workflow, a backend whose runs finish at once.

Everything real except the OpenCompass job: the unmodified dapr SDK runtime/client (build_runtime from
budeval/workflow/worker.py), the embedded sidecar (SQLite state; by default in its own process, as ``budeval serve``
starts it on Linux), the chDB store (open_store), the folder archive, events published through the sidecar
(DaprClient.publish_event). The backend copies a fixture run folder on submit.

Two modes in one run, side by side:
  event  the backend's watch raises RUN_FINISHED_EVENT into the run's child workflow (as the real watchers do);
  poll   the backend never raises it; the workflow's durable-timer poll (``--poll-s``) finds the finished run.
The poll-mode evaluations are spread evenly through the run and have their own ``--concurrency`` slots (each waits
out its timer; sharing slots would idle the event-driven ones). Throughput = all evaluations / wall time.
Latency = from the moment the run finished (fixture copied) to the ``completed`` event in the sidecar's topic log.

Then it prints the CPU per evaluation of this process (worker, store, the benchmark's own client) and of the
sidecar process, the store's group-commit batch sizes and, after the run, the *orchestration floor*: the same
workflow shape (prepare -> child: submit -> event-or-timer -> collect -> finalize) with activities that do nothing,
through a fresh sidecar -- what the SDK and the sidecar cost by themselves (``--no-floor`` skips it).

Last line exactly: ``evals_per_s=<float> p50_ms=<int> p99_ms=<int> poll_p50_ms=<int>``.
"""

from __future__ import annotations

import argparse
import os
import queue
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIXTURE = ROOT / "tests" / "fixtures" / "opencompass" / "qa_chat"


class InstantBackend:
    """A JobBackend whose runs finish at once: submit copies a real OpenCompass run folder."""

    name = "instant"

    def __init__(self, results_root: Path, fixture: Path, silent_prefix: str) -> None:
        from budeval.backends.base import RunState

        self._state = RunState
        self.results_root = results_root
        self.fixture = fixture
        self.silent_prefix = silent_prefix  # evaluations whose runs never raise the event (poll mode)
        self.finished_at: dict[str, float] = {}
        self._events: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()

    def work_dir(self, eval_id: str, run_id: str) -> Path:
        return self.results_root / eval_id / run_id

    def submit(self, spec: Any) -> Any:
        target = self.work_dir(spec.eval_id, spec.run_id)
        if not target.exists():
            shutil.copytree(self.fixture, target, dirs_exist_ok=True)
        with self._lock:
            self.finished_at.setdefault(spec.eval_id, time.time())
        state = self._state(eval_id=spec.eval_id, run_id=spec.run_id, phase="succeeded")
        if not spec.eval_id.startswith(self.silent_prefix):
            self._events.put(state)
        # Reported as running: the workflow then waits, as it would for a real job.
        return self._state(eval_id=spec.eval_id, run_id=spec.run_id, phase="running")

    def get(self, eval_id: str, run_id: str) -> Any:
        phase = "succeeded" if self.work_dir(eval_id, run_id).exists() else "unknown"
        return self._state(eval_id=eval_id, run_id=run_id, phase=phase)

    def cancel(self, eval_id: str) -> None:
        return None

    def cleanup(self, eval_id: str, run_id: str) -> None:
        return None

    def watch(self, on_finished: Any) -> Any:
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    state = self._events.get(timeout=0.2)
                except queue.Empty:
                    continue
                on_finished(state)

        thread = threading.Thread(target=loop, name="instant-watch", daemon=True)
        thread.start()

        class _Watch:
            def stop(self) -> None:
                stop.set()
                thread.join(timeout=5)

        return _Watch()


class MemoryStore:
    """STAND-IN, only with ``--store memory``: isolates the sidecar + workflow cost from chDB's (not the real store)."""

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

    def copy_results(self, source_eval: str, target_eval: str, model: str | None = None) -> int:
        return 0

    def store_run(self, eval_id: str, run_id: str, parsed: Any) -> Any:
        from budeval.storage.base import StoreReport

        return StoreReport(metrics=len(parsed.metrics), predictions=sum(len(b) for b in parsed.prediction_batches()))

    def close(self) -> None:
        return None


def orchestration_floor(sidecar_kind: str, work: Path, evals: int, concurrency: int) -> dict[str, float]:
    """The same workflow shape with activities that do nothing: what the SDK + sidecar alone cost per evaluation.

    Parent: prepare -> a child workflow (submit -> wait for the run_finished event or a timer -> collect) ->
    finalize; the event is raised as the watcher raises it. No store, archive, parser or events: whatever the real
    run costs above this is the evaluation's own work.
    """
    from datetime import timedelta

    import dapr.ext.workflow as wf

    from budeval.sidecar import EmbeddedSidecar
    from budeval.sidecar.process import SidecarProcess

    own0, child0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    sidecar: Any = (SidecarProcess if sidecar_kind == "process" else EmbeddedSidecar)(work / "floor.db")
    sidecar.start()
    finished: dict[str, float] = {}
    lock = threading.Lock()
    submitted: queue.Queue[str | None] = queue.Queue()

    def step(ctx: Any, payload: Any) -> Any:
        return payload

    def submit(ctx: Any, payload: Any) -> Any:
        submitted.put(str(payload))  # "the run finished at once": the watcher below raises the event
        return payload

    def finalize(ctx: Any, payload: Any) -> Any:
        with lock:
            finished[str(payload)] = time.time()
        return payload

    def run(ctx: Any, payload: Any) -> Any:
        yield ctx.call_activity(submit, input=payload)
        event = ctx.wait_for_external_event("run_finished")
        yield wf.when_any([event, ctx.create_timer(timedelta(seconds=60))])
        return (yield ctx.call_activity(step, input=payload))

    def evaluation(ctx: Any, payload: Any) -> Any:
        yield ctx.call_activity(step, input=payload)
        yield ctx.call_child_workflow(run, input=payload, instance_id=f"{payload}~r0")
        return (yield ctx.call_activity(finalize, input=payload))

    runtime = wf.WorkflowRuntime(host="127.0.0.1", port=str(sidecar.grpc_port), maximum_thread_pool_workers=32)
    for workflow in (evaluation, run):
        runtime.register_workflow(workflow)
    for activity in (step, submit, finalize):
        runtime.register_activity(activity)
    runtime.start()
    client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))

    def watch() -> None:
        while (eval_id := submitted.get()) is not None:
            client.raise_workflow_event(f"{eval_id}~r0", "run_finished", data={})

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    slots = threading.Semaphore(concurrency)

    def one(eval_id: str) -> None:
        try:
            client.schedule_new_workflow(evaluation, input=eval_id, instance_id=eval_id)
            deadline = time.monotonic() + 60
            while eval_id not in finished and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            slots.release()  # a lost evaluation shows as a lower count, not as a hang

    t0 = time.time()
    threads = []
    for i in range(evals):
        slots.acquire()
        thread = threading.Thread(target=one, args=(f"floor-{i:04d}",), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.time() - t0
    if len(finished) < evals:
        print(f"orchestration floor: only {len(finished)} of {evals} evaluations finished", file=sys.stderr)
    submitted.put(None)
    runtime.shutdown()
    sidecar.stop()
    own, child = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)

    def cpu_ms(after: Any, before: Any) -> float:
        return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / evals * 1000

    return {
        "evals_per_s": len(finished) / elapsed,
        "this_ms": cpu_ms(own, own0),
        "sidecar_ms": cpu_ms(child, child0),
    }


def request(eval_id: str) -> dict[str, Any]:
    return {
        "eval_id": eval_id,
        "model": {"name": "bench-model", "source": {"type": "huggingface", "path": "/models/bench"}},
        "datasets": ["tiny_qa"],
        "force": True,
    }


def interleave(main: list[str], spread: list[str]) -> list[str]:
    """Both lists in their own order, ``spread``'s items evenly among ``main``'s."""
    placed = [((i + 0.5) / len(main), 0, item) for i, item in enumerate(main)]
    placed += [((k + 0.5) / len(spread), 1, item) for k, item in enumerate(spread)]
    return [item for _, _, item in sorted(placed)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evals", type=int, default=200, help="event-driven evaluations")
    parser.add_argument("--poll-evals", type=int, default=40, help="timer-poll evaluations (no event raised)")
    parser.add_argument("--poll-s", type=float, default=1.0, help="first poll interval of the timer fallback")
    parser.add_argument("--concurrency", type=int, default=8, help="evaluations in flight at once")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--sidecar",
        choices=("process", "embedded"),
        default="process",
        help="the sidecar as its own process (budeval.sidecar.process: what `budeval serve` starts by default on "
        "Linux) or in this process",
    )
    parser.add_argument(
        "--store",
        default="",
        help="store DSN (default: chDB in the work dir); 'memory': a stand-in, to isolate chDB's cost",
    )
    parser.add_argument(
        "--linger-ms",
        type=float,
        default=None,
        help="the store's group-commit linger (default: the store's own; 0 turns it off), for side-by-side runs",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the orchestration floor (the same workflow shape with activities that do nothing, run after)",
    )
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    for noisy in ("durabletask-worker", "durabletask-client", "WorkflowRuntime", "DaprWorkflowClient"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-workflow-"))
    work.mkdir(parents=True, exist_ok=True)

    from budeval.sidecar import EmbeddedSidecar
    from budeval.sidecar.process import SidecarProcess

    state = work / "sidecar.db"
    sidecar: Any = SidecarProcess(state) if args.sidecar == "process" else EmbeddedSidecar(state)
    sidecar.start()
    # The SDK reads DAPR_* from the environment at call time (dapr.conf.settings), so setting them here suffices.
    os.environ["DAPR_RUNTIME_HOST"] = "127.0.0.1"
    os.environ["DAPR_GRPC_PORT"] = str(sidecar.grpc_port)
    os.environ["DAPR_HTTP_PORT"] = str(sidecar.http_port)
    os.environ.pop("DAPR_GRPC_ENDPOINT", None)
    os.environ.pop("DAPR_HTTP_ENDPOINT", None)

    import dapr.ext.workflow as wf

    from budeval.config import Settings
    from budeval.engine.catalog import load_suites
    from budeval.engine.results import parse_run
    from budeval.events.publisher import DaprPublisher
    from budeval.storage.factory import open_archive, open_store
    from budeval.workflow import names
    from budeval.workflow.activities import Deps
    from budeval.workflow.models import WorkflowInput
    from budeval.workflow.worker import build_runtime

    settings = Settings(
        data_dir=work, results_root=work / "results", archive_url=f"file://{work / 'archive'}", store_dsn=args.store
    )
    linger = {} if args.linger_ms is None else {"linger_s": args.linger_ms / 1000}
    store: Any = MemoryStore() if args.store == "memory" else open_store(settings.resolved_store_dsn(), **linger)
    store.migrate()
    backend = InstantBackend(work / "results", FIXTURE, silent_prefix="poll-")
    deps = Deps(
        settings=settings,
        backend=backend,  # type: ignore[arg-type]
        store=store,
        archive=open_archive(settings.resolved_archive_url()),
        publisher=DaprPublisher(settings.pubsub_name),
        parse=parse_run,
        suites=load_suites(settings.suites_path),
    )
    runtime, _ = build_runtime(deps, host="127.0.0.1", port=str(sidecar.grpc_port))
    runtime.start()
    client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))

    def raise_finished(state: Any) -> None:
        client.raise_workflow_event(
            names.run_instance_id(state.eval_id, state.run_id), names.RUN_FINISHED_EVENT, data=state.model_dump()
        )

    watch = backend.watch(raise_finished)
    completed_at: dict[str, float] = {}
    ended: dict[str, str] = {}
    done = threading.Event()
    expected = args.evals + args.poll_evals

    def follow() -> None:
        """Reads the events topic from the sidecar's log; a `completed` event's arrival time ends the latency."""
        import httpx

        after = 0
        url = f"http://127.0.0.1:{sidecar.http_port}/v1.0-alpha1/messages"
        with httpx.Client() as http:
            while not done.is_set():
                for msg in http.get(url, params={"topic": settings.events_topic, "after": after}).json():
                    after = max(after, msg["seq"])
                    event = msg["event"]
                    kind = str(event.get("type", "")).rsplit(".", 1)[-1]
                    eval_id = (event.get("data") or {}).get("eval_id")
                    if kind in ("completed", "failed") and eval_id:
                        completed_at.setdefault(eval_id, msg.get("published_at") or time.time())
                        ended[eval_id] = kind
                if len(completed_at) >= expected:
                    return
                time.sleep(0.05)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()

    # Each mode has its own slots: a poll-mode evaluation waits out its timer (>= --poll-s) and must not hold a slot
    # of the event-driven ones. The poll-mode ones are spread evenly through the run, so both modes share the load.
    slots = {"evt": threading.Semaphore(args.concurrency), "poll": threading.Semaphore(args.concurrency)}
    submitted: list[str] = []
    ids = interleave([f"evt-{i:04d}" for i in range(args.evals)], [f"poll-{i:04d}" for i in range(args.poll_evals)])

    def slot(eval_id: str) -> threading.Semaphore:
        return slots[eval_id.split("-", 1)[0]]

    def submit_all() -> None:
        for eval_id in ids:
            slot(eval_id).acquire()
            payload = WorkflowInput.model_validate(
                {
                    "request": request(eval_id),
                    "received_at": datetime.now(UTC).isoformat(),
                    "poll_initial_s": args.poll_s,
                    "poll_max_s": max(args.poll_s, 5.0),
                }
            )
            client.schedule_new_workflow(
                names.EVALUATION_WORKFLOW, input=payload.model_dump(mode="json"), instance_id=eval_id
            )
            submitted.append(eval_id)

    def release_on_completion() -> None:
        seen: set[str] = set()
        while len(seen) < len(ids) and not done.is_set():
            for eval_id in list(completed_at):
                if eval_id not in seen:
                    seen.add(eval_id)
                    slot(eval_id).release()
            time.sleep(0.05)

    releaser = threading.Thread(target=release_on_completion, daemon=True)
    releaser.start()
    t0 = time.time()
    submit_all()
    deadline = time.monotonic() + 600
    crashed: dict[str, str] = {}
    next_check = time.monotonic() + 2.0
    while len(completed_at) + len(crashed) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        if time.monotonic() < next_check:
            continue
        next_check = time.monotonic() + 2.0
        # A workflow that failed outright never publishes an event: stop waiting for it. Only evaluations in flight
        # are asked (at most --concurrency): asking all of them would load the sidecar with status calls.
        for eval_id in list(submitted):
            if eval_id in completed_at or eval_id in crashed:
                continue
            st = client.get_workflow_state(eval_id, fetch_payloads=False)
            if st is not None and st.runtime_status in (wf.WorkflowStatus.FAILED, wf.WorkflowStatus.TERMINATED):
                crashed[eval_id] = str(st.failure_details.message if st.failure_details else st.runtime_status)
                slot(eval_id).release()
    elapsed = time.time() - t0
    done.set()
    watch.stop()
    runtime.shutdown()
    sidecar.stop()
    store.close()

    own, child = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    missing = [i for i in ids if i not in completed_at]
    bad = {i: k for i, k in ended.items() if k != "completed"}
    bad.update(crashed)
    event_lat = [
        (completed_at[i] - backend.finished_at[i]) * 1000 for i in ids if i.startswith("evt-") and i in completed_at
    ]
    poll_lat = [
        (completed_at[i] - backend.finished_at[i]) * 1000 for i in ids if i.startswith("poll-") and i in completed_at
    ]
    print(f"workdir={work}", file=sys.stderr)
    print(f"evaluations={len(ids)} finished={len(completed_at)} missing={len(missing)} not_completed={len(bad)}")
    print(
        f"elapsed_s={elapsed:.2f} (event {args.evals} + poll {args.poll_evals}, concurrency {args.concurrency}, "
        f"sidecar {args.sidecar}, store {args.store or 'chdb'})"
    )
    if event_lat:
        print(
            f"event-driven: p50={statistics.median(event_lat):.0f} ms p99={percentile(event_lat, 99):.0f} ms "
            f"max={max(event_lat):.0f} ms"
        )
    if poll_lat:
        print(
            f"timer-poll ({args.poll_s}s): p50={statistics.median(poll_lat):.0f} ms "
            f"p99={percentile(poll_lat, 99):.0f} ms"
        )
    # CPU is what bounds throughput on a small machine: worker + store in this process, the sidecar in its own.
    print(
        f"cpu per evaluation: this process {(own.ru_utime + own.ru_stime) / len(ids) * 1000:.0f} ms, "
        f"sidecar process {(child.ru_utime + child.ru_stime) / len(ids) * 1000:.0f} ms"
    )
    sizes = getattr(getattr(store, "_commits", None), "batch_sizes", [])
    if sizes:
        print(f"store group commits: {len(sizes)} batches, {sum(sizes) / len(sizes):.1f} writes each on average")
    if not args.no_floor:
        floor = orchestration_floor(args.sidecar, work, args.evals, args.concurrency)
        print(
            f"orchestration floor (same workflow shape, activities do nothing, {args.evals} evaluations): "
            f"{floor['evals_per_s']:.2f} evals/s, cpu per evaluation: this process {floor['this_ms']:.0f} ms, "
            f"sidecar process {floor['sidecar_ms']:.0f} ms; the real run reached "
            f"{len(completed_at) / elapsed / floor['evals_per_s']:.2f} of it"
        )
    if missing or bad:
        print(f"FAILED: missing={missing[:5]} not_completed={list(bad.items())[:5]}", file=sys.stderr)
    evals_per_s = len(completed_at) / elapsed if elapsed > 0 else 0.0
    p50 = int(statistics.median(event_lat)) if event_lat else -1
    p99 = int(percentile(event_lat, 99)) if event_lat else -1
    poll_p50 = int(statistics.median(poll_lat)) if poll_lat else -1
    print(f"evals_per_s={evals_per_s:.2f} p50_ms={p50} p99_ms={p99} poll_p50_ms={poll_p50}")
    return 1 if missing or bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
