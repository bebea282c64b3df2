"""Extraction benchmark: parse + store of a large OpenCompass work dir, against a floor measured on the same files.

    .venv/bin/python scripts/bench_extract.py [--models 8 --datasets 50 --examples 1000 --prompt-bytes 500]
        [--split] [--workers N] [--work-dir DIR]

1. Generates a synthetic work dir in OpenCompass's real format (summary CSV, predictions with chat-turn prompts,
   results with list-shaped details) -- default 8 x 50 x 1,000 = 400k predictions.
2. End to end, in a fresh process: ``store.store_run(eval, run, parse_run(dir))`` into an empty chDB store.
3. Floor, in another fresh process on the same files: stdlib ``json.load`` of each predictions file, rows prebuilt in
   columns, then ONE column-oriented bulk insert into the same table of an empty chDB store.
4. With ``--split``: parse alone (iterate the batches, no store) and store alone (``store_run`` of batches prebuilt in
   memory, so its own peak is not meaningful), to show which side bounds the end-to-end figure.
Each phase runs in its own process so its peak is its own: the largest of the phase's ru_maxrss and the summed RSS of
the phase process and its children (the parser's worker processes), sampled by psutil every 20 ms. The phases run
side by side in one invocation because the machine is shared and noisy: the ratio is the figure that matters.
``--work-dir`` keeps the generated files there (generated only if missing) for repeated runs.
Last line: ``rows_per_s=<int> ratio_to_floor=<float> peak_rss_mb=<int>`` (peak of the end-to-end phase).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TS = "20261123_120000"


def generate(root: Path, models: int, datasets: int, examples: int, prompt_bytes: int) -> int:
    folder = root / TS
    rng = random.Random(7)
    model_names = [f"model-{m}" for m in range(models)]
    dataset_names = [f"dataset_{d}" for d in range(datasets)]
    (folder / "summary").mkdir(parents=True)
    (folder / "configs").mkdir()
    (folder / "configs" / f"{TS}_1.py").write_text("models = []\ndatasets = []\n")
    lines = ["dataset,version,metric,mode," + ",".join(model_names)]
    filler = "lorem ipsum dolor sit amet " * (prompt_bytes // 27 + 1)
    for dataset in dataset_names:
        lines.append(f"{dataset},abc123,accuracy,gen," + ",".join(f"{rng.uniform(0, 100):.2f}" for _ in model_names))
    (folder / "summary" / f"summary_{TS}.csv").write_text("\n".join(lines) + "\n")
    for model in model_names:
        (folder / "predictions" / model).mkdir(parents=True)
        (folder / "results" / model).mkdir(parents=True)
        for dataset in dataset_names:
            predictions = {}
            details = []
            for i in range(examples):
                prompt = f"Question {i} of {dataset}: {filler[: prompt_bytes - 40]}"
                right = rng.random() < 0.5
                predictions[str(i)] = {
                    "origin_prompt": [{"role": "HUMAN", "prompt": prompt}],
                    "prediction": f"The answer is {i % 4}.",
                    "gold": str(i % 4 if right else (i + 1) % 4),
                }
                details.append({"example_abbr": f"{dataset}_{i}", "pred": [str(i % 4)], "answer": [str(i % 4)],
                                "correct": [right]})
            (folder / "predictions" / model / f"{dataset}.json").write_text(json.dumps(predictions, indent=4))
            (folder / "results" / model / f"{dataset}.json").write_text(
                json.dumps({"accuracy": 50.0, "details": details}, indent=4)
            )
    return models * datasets * examples


def phase_end_to_end(work: Path, store_dir: Path, workers: int | None) -> dict[str, float]:
    from budeval.engine.results import parse_run
    from budeval.storage.factory import open_store

    store = open_store(f"chdb://{store_dir}")
    store.migrate()
    started = time.perf_counter()
    report = store.store_run("bench", "r0", parse_run(work, workers=workers))
    elapsed = time.perf_counter() - started
    store.close()
    return {"rows": report.predictions, "seconds": elapsed}


def phase_parse(work: Path, store_dir: Path, workers: int | None) -> dict[str, float]:
    from budeval.engine.results import parse_run

    started = time.perf_counter()
    rows = sum(len(batch) for batch in parse_run(work, workers=workers).prediction_batches(20_000))
    return {"rows": rows, "seconds": time.perf_counter() - started}


def phase_store(work: Path, store_dir: Path, workers: int | None) -> dict[str, float]:
    from budeval.engine.results import parse_run
    from budeval.storage.factory import open_store

    store = open_store(f"chdb://{store_dir}")
    store.migrate()
    parsed = parse_run(work, workers=0)
    batches = list(parsed.prediction_batches(store.batch_size))

    class Prebuilt:  # the same run, its batches already in memory
        facts, metrics, statuses = parsed.facts, parsed.metrics, parsed.statuses

        def prediction_batches(self, batch_size: int = 50_000) -> Any:
            return iter(batches)

    started = time.perf_counter()
    report = store.store_run("bench", "r0", Prebuilt())
    elapsed = time.perf_counter() - started
    store.close()
    return {"rows": report.predictions, "seconds": elapsed}


def phase_floor(work: Path, store_dir: Path, workers: int | None) -> dict[str, float]:
    import clickhouse_connect

    from budeval.storage.factory import open_store

    store = open_store(f"chdb://{store_dir}")
    store.migrate()
    store.close()
    client = clickhouse_connect.get_client(dsn=f"chdb://{store_dir}")
    names = ["eval_id", "run_id", "model", "dataset", "example_index", "prompt", "prediction", "gold", "correct"]
    started = time.perf_counter()
    columns: list[list[object]] = [[] for _ in names]
    for path in sorted(work.glob(f"{TS}/predictions/*/*.json")):
        with path.open() as f:
            data = json.load(f)
        model, dataset = path.parent.name, path.stem
        for key, entry in data.items():
            prompt = entry["origin_prompt"]
            text = "\n".join(f"{t['role']}: {t['prompt']}" for t in prompt) if isinstance(prompt, list) else prompt
            for column, value in zip(
                columns,
                ("bench", "r0", model, dataset, int(key), text, entry["prediction"], entry["gold"], None),
                strict=True,
            ):
                column.append(value)
    client.insert("predictions", columns, column_names=names, column_oriented=True)
    elapsed = time.perf_counter() - started
    return {"rows": len(columns[0]), "seconds": elapsed}


PHASES: dict[str, Callable[[Path, Path, int | None], dict[str, float]]] = {
    "end_to_end": phase_end_to_end,
    "floor": phase_floor,
    "parse": phase_parse,
    "store": phase_store,
}


def tree_rss_sampler() -> Callable[[], float]:
    """Starts sampling this process's RSS plus its children's; returns a function giving the peak in MB so far."""
    import psutil

    me = psutil.Process()
    peak = [0.0]

    def sample() -> None:
        while True:
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker that just exited
                    total += proc.memory_info().rss
            peak[0] = max(peak[0], total / 2**20)
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    return lambda: peak[0]


def run_phase(name: str, work: Path, store_dir: Path, workers: int | None) -> dict[str, float]:
    extra = [] if workers is None else ["--workers", str(workers)]
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--work", str(work), "--store-dir", str(store_dir), *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--datasets", type=int, default=50)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--prompt-bytes", type=int, default=500)
    parser.add_argument("--split", action="store_true", help="also time parse alone and store alone")
    parser.add_argument("--workers", type=int, help="parse worker processes (default: the parser's own choice)")
    parser.add_argument("--work-dir", type=Path, help="keep the generated work dir here (reused if present)")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        peak = tree_rss_sampler()
        result = PHASES[args.phase](args.work, args.store_dir, args.workers)
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        result["peak_rss_mb"] = max(own.ru_maxrss / 1024, peak())
        # CPU seconds (this process and its workers): unlike wall time, barely moved by other load on the machine.
        result["cpu_s"] = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        print(json.dumps(result))
        return

    tmp = Path(tempfile.mkdtemp(prefix="budeval-bench-extract-"))
    try:
        work = args.work_dir or tmp / "work"
        started = time.perf_counter()
        total = args.models * args.datasets * args.examples
        if not (work / TS / "summary").is_dir():
            total = generate(work, args.models, args.datasets, args.examples, args.prompt_bytes)
        size_mb = sum(p.stat().st_size for p in work.rglob("*.json")) / 2**20
        ready = time.perf_counter() - started
        print(f"work dir: {total} predictions ({size_mb:.0f} MB of JSON) ready in {ready:.1f} s")
        floor = run_phase("floor", work, tmp / "store-floor", args.workers)
        e2e = run_phase("end_to_end", work, tmp / "store-e2e", args.workers)
        figures = [("floor (json.load + one bulk insert)", floor), ("budeval parse_run + store_run", e2e)]
        if args.split:
            figures.append(("parse alone (no store)", run_phase("parse", work, tmp / "store-parse", args.workers)))
            figures.append(("store alone (prebuilt batches)", run_phase("store", work, tmp / "store-only", 0)))
        for name, r in figures:
            print(f"{name:40s} rows={int(r['rows'])} seconds={r['seconds']:.2f} rows/s={r['rows'] / r['seconds']:.0f} "
                  f"cpu_s={r['cpu_s']:.2f} peak_rss_mb={r['peak_rss_mb']:.0f}")
        if args.split:
            parse_s, store_s = figures[2][1]["seconds"], figures[3][1]["seconds"]
            print(f"parse share of parse+store CPU-bound work: {parse_s / (parse_s + store_s):.0%} "
                  f"(serial sum {parse_s + store_s:.2f} s vs end to end {e2e['seconds']:.2f} s)")
        if int(e2e["rows"]) != total or int(floor["rows"]) != total:
            raise SystemExit(f"row counts differ: expected {total}, end to end {e2e['rows']}, floor {floor['rows']}")
        rate = e2e["rows"] / e2e["seconds"]
        ratio = rate / (floor["rows"] / floor["seconds"])
        print(f"rows_per_s={int(rate)} ratio_to_floor={ratio:.2f} peak_rss_mb={int(e2e['peak_rss_mb'])}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
