"""Web UI benchmark: the server time of every page and the size of a first load, on a store of 10,000 evaluations,
50 datasets and 1,000,000 predictions (embedded chDB), through the real app on real HTTP.

    .venv/bin/python scripts/bench_ui.py [--evaluations 10000 --datasets 50 --predictions 1000000] [--repeat 20]

1. Fills an empty store with SQL (``INSERT ... SELECT FROM numbers(n)``: the benchmark measures the reads, not the
   write path): evaluations of 200 models, each over 5 of the datasets with its scores and an equal share of the
   predictions (about 70% right), the first 20 evaluations a checkpoint series.
2. Serves ``create_app`` (the service's routes, auth and the UI) with uvicorn on loopback, logs in, and requests every
   page ``--repeat`` times (leaderboard: default, a dataset set sorted by score on its third page; evaluation;
   status poll; compare with flips; series; one example across the series; examples: unfiltered, by text, by
   evaluation and correctness). The time of a request is the server's own: the ``Server-Timing: app;dur=`` header
   every response carries (budeval/service/timing.py: from the request reaching the app to its first byte). The
   client's time on loopback is printed beside it: the client runs in this process and shares its GIL with the
   server, which adds tens of milliseconds that are neither the server's nor a browser's.

3. First load: the page's HTML plus every ``/ui/static`` file it links (styles, scripts, the chart library),
   uncompressed, as a browser with an empty cache fetches them.

4. Floor, measured side by side in the same run: ``GET /readyz`` (the same server and loopback, one trivial store
   query), so that a loaded machine shows as a high floor rather than as a slow UI.

Last line: ``p95_ms=<the slowest page's p95> page_kb=<the largest first load> floor_p95_ms=<readyz p95>
ratio_to_floor=<p95_ms / floor_p95_ms>``. Targets (issue 17): p95 < 300 ms per page, first load < 500 KB.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from budeval.config import Settings
from budeval.engine.catalog import load_suites
from budeval.events.publisher import MemoryPublisher
from budeval.service.app import ServiceDeps, create_app
from budeval.service.auth import Auth
from budeval.service.timing import server_time_ms
from budeval.storage.factory import open_store

TOKEN = "bench-ui-token"
MODELS = 200
PER_EVAL = 5  # datasets per evaluation
SERIES = 20  # the first evaluations form a checkpoint series


def fill(store: Any, evaluations: int, datasets: int, predictions: int) -> None:
    per_dataset = max(1, predictions // (evaluations * PER_EVAL))
    # An evaluation's datasets: PER_EVAL consecutive ones from (e * 7) % datasets (every dataset gets covered).
    ds = f"'dataset_' || toString(modulo(intDiv(e, 1) * 7 + k, {datasets}))"
    store._command("bench evaluations", f"""
        INSERT INTO evaluations (eval_id, experiment_id, status, params_hash, model_name, model_source,
                                 model_revision, datasets, archive_url, created_at, finished_at, provenance, labels,
                                 checkpoint_series, checkpoint_step, updated_at, row_version)
        SELECT 'bench-' || toString(e), NULL, 'completed', hex(cityHash64(e)),
               'model-' || toString(modulo(e, {MODELS})),
               'hub/model', 'main', arrayMap(k -> {ds}, range({PER_EVAL})), 'file:///archive/bench-' || toString(e),
               toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + e, toDateTime64('2026-01-01 00:05:00', 3, 'UTC') + e,
               '{{"engine_version": "0.5.4", "budeval_version": "0.1.0"}}', map('team', 'bench'),
               if(e < {SERIES}, 'bench-run', ''), if(e < {SERIES}, toUInt64(1000 * (e + 1)), NULL), now64(6), 1
        FROM (SELECT number AS e FROM numbers({evaluations}))
    """)
    # For the series to share examples, the first SERIES evaluations evaluate the same model on the same datasets.
    model = f"if(e < {SERIES}, 'model-0', 'model-' || toString(modulo(e, {MODELS})))"
    dsx = f"'dataset_' || toString(modulo(if(e < {SERIES}, 0, e) * 7 + k, {datasets}))"
    store._command("bench scores", f"""
        INSERT INTO scores (eval_id, run_id, model, dataset, metric, score, version, mode, status, run_at, reason,
                            judge)
        SELECT 'bench-' || toString(e), 'r0', {model}, {dsx}, 'accuracy', modulo(cityHash64(e, k), 1000) / 10.0,
               'v1', 'gen', 'ok', toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + e, NULL, ''
        FROM (SELECT number AS e FROM numbers({evaluations})) ARRAY JOIN range({PER_EVAL}) AS k
    """)
    store._command("bench statuses", f"""
        INSERT INTO dataset_status (eval_id, run_id, model, dataset, status, reason, run_at)
        SELECT 'bench-' || toString(e), 'r0', {model}, {dsx}, 'ok', NULL, toDateTime64('2026-01-01', 3, 'UTC') + e
        FROM (SELECT number AS e FROM numbers({evaluations})) ARRAY JOIN range({PER_EVAL}) AS k
    """)
    store._command("bench predictions", f"""
        INSERT INTO predictions (eval_id, run_id, model, dataset, example_index, prompt, prediction, gold, correct,
                                 replica, score)
        SELECT 'bench-' || toString(e), 'r0', {model}, {dsx} AS ds, toUInt32(i),
               concat('USER: question ', toString(i), ' of ', ds, '. Think step by step and answer.'),
               concat('The answer is ', toString(modulo(cityHash64(e, i), 4))), toString(modulo(i, 4)),
               modulo(cityHash64(e, k, i), 100) < 70, 0, NULL
        FROM (SELECT number AS e FROM numbers({evaluations}))
        ARRAY JOIN range({PER_EVAL}) AS k
        ARRAY JOIN range({per_dataset}) AS i
    """)


def serve(app: Any) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


class _NoWorkflows:
    def get_workflow_state(self, instance_id: str, *, fetch_payloads: bool = True) -> Any:
        return None


def percentile95(times: list[float]) -> float:
    """The 95th percentile (ms) of ``times`` (statistics.quantiles' exclusive method; the value itself for one)."""
    return statistics.quantiles(times, n=20)[-1] if len(times) >= 2 else times[0]


def first_load_bytes(client: httpx.Client, html: str) -> int:
    total = len(html.encode())
    for asset in sorted(set(re.findall(r'(?:href|src)="(/ui/static/[^"]+)"', html))):
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        total += len(answer.content)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evaluations", type=int, default=10_000)
    parser.add_argument("--datasets", type=int, default=50)
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    pages = {
        "leaderboard": "/ui/leaderboard",
        "leaderboard-sorted": "/ui/leaderboard?datasets=dataset_3&datasets=dataset_10&sort=score&dir=desc&offset=50",
        "evaluation": "/ui/evals/bench-123",
        "status-poll": "/ui/evals/bench-123/status.json",
        "compare": "/ui/compare?a=bench-0&b=bench-200",
        "series": "/ui/series/bench-run",
        "series-example": "/ui/series/bench-run/example?dataset=dataset_0&index=3",
        "examples": "/ui/examples",
        "examples-text": "/ui/examples?text=question%2012%20of",
        "examples-eval": "/ui/examples?eval_id=bench-4567&correct=wrong",
    }
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        store = open_store(f"chdb://{tmp}/ch")
        try:
            store.migrate()
            start = time.perf_counter()
            fill(store, args.evaluations, args.datasets, args.predictions)
            counted = store._rows("count", "SELECT count() FROM predictions")[0][0]
            print(f"filled {args.evaluations} evaluations, {counted} predictions in "
                  f"{time.perf_counter() - start:.1f}s", file=sys.stderr)
            app = create_app(ServiceDeps(
                settings=Settings(data_dir=Path(tmp), models_root=[Path("/models")]), workflows=_NoWorkflows(),
                store=store, backend=None, publisher=MemoryPublisher(), suites=load_suites(),  # type: ignore[arg-type]
                auth=Auth(api_token=TOKEN),
            ))
            url, server, thread = serve(app)
            worst_p95, worst_kb, floor = 0.0, 0.0, 0.0
            with httpx.Client(base_url=url, timeout=60) as client:
                assert client.post("/ui/login", data={"token": TOKEN}).status_code == 303
                for name, path in {"floor (readyz)": "/readyz", **pages}.items():
                    first = client.get(path)
                    assert first.status_code == 200, (name, first.status_code, first.text[:300])
                    size = len(first.content) if "json" in path or path == "/readyz" else first_load_bytes(
                        client, first.text)
                    kb = size / 1024
                    times, client_times = [], []
                    for _ in range(args.repeat):
                        began = time.perf_counter()
                        answer = client.get(path)
                        client_times.append((time.perf_counter() - began) * 1000)
                        assert answer.status_code == 200
                        server_ms = server_time_ms(answer.headers.get("server-timing"))
                        assert server_ms is not None, (name, answer.headers)
                        times.append(server_ms)
                    p95 = percentile95(times)
                    if path == "/readyz":
                        floor = p95
                    else:
                        worst_p95, worst_kb = max(worst_p95, p95), max(worst_kb, kb)
                    print(f"{name:<20} server p50 {statistics.median(times):7.1f} ms  p95 {p95:7.1f} ms  "
                          f"(client p95 {percentile95(client_times):7.1f} ms)  first load {kb:6.1f} KB",
                          file=sys.stderr)
            server.should_exit = True
            thread.join(timeout=30)
        finally:
            store.close()
    ratio = worst_p95 / floor if floor else float("nan")
    print(f"p95_ms={worst_p95:.1f} page_kb={worst_kb:.1f} floor_p95_ms={floor:.1f} ratio_to_floor={ratio:.1f}")
    return 0 if worst_p95 < 300 and worst_kb < 500 else 1


if __name__ == "__main__":
    raise SystemExit(main())
