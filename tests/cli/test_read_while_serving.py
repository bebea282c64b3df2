"""Every read command on the embedded default, with and without a running `budeval serve` holding the chDB store.

The store is filled first (real chDB, the store's own writes); each command then runs as a user runs it: once with no
service (it opens the store itself), once while the real service runs (chDB refuses a second process: "Cannot lock
file .../status", so the command asks the service's HTTP API). Output and exit code must be the same; ``--verbose``
says which path was taken. While it runs, a suite file added to its suites folder is known without a restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from budeval.storage.base import EvaluationRecord
from budeval.storage.factory import open_store
from tests.service.serve_process import ServeProcess, serve_env
from tests.storage.fakes import Example, simple_run

REQUEST = {
    "eval_id": "plan-1",
    "model": {"name": "m", "source": {"type": "huggingface", "path": "/models/m"}},
    "datasets": ["tiny_qa"],
}

#: (name, argv) of each read command; every one is run twice.
COMMANDS: list[tuple[str, list[str]]] = [
    ("results", ["results", "ck-1"]),
    ("results-json-examples", ["results", "ck-2", "--json", "--examples", "3"]),
    ("results-failed", ["results", "broken-1"]),
    ("results-unknown", ["results", "nope-1"]),
    ("leaderboard", ["leaderboard", "--dataset", "tiny_qa", "--dataset", "tiny_mcq", "--mode", "best", "--limit", "2"]),
    ("compare", ["compare", "ck-1", "ck-2", "--examples"]),
    ("explain", ["explain", "ck-1", "ck-3"]),
    ("gate-json", ["gate", "ck-1", "ck-2", "--json"]),
    ("gate-unknown", ["gate", "nope-1", "ck-2"]),
    ("series", ["series", "run-7"]),
    ("plan", ["plan", "REQUEST", "--json"]),
]


def _fill(data_dir: Path) -> None:
    """Three checkpoints of one series (ck-1..3) and a failed evaluation, written by the store itself."""
    store = open_store(f"chdb://{data_dir / 'clickhouse'}")
    try:
        store.migrate()
        flags = {1: [True, False, False, True] * 5, 2: [True, True, False, True] * 5, 3: [True, True, True, True] * 5}
        for step in (1, 2, 3):
            eval_id = f"ck-{step}"
            run = simple_run(f"2026010{step}_000000", {("m", "tiny_qa"): 40.0 + 10 * step, ("m", "tiny_mcq"): 50.0},
                             {("m", "tiny_qa"): flags[step], ("m", "tiny_mcq"): flags[1]})
            run.examples = [Example(e.model, e.dataset, e.index, e.correct, f"answer {e.index}", "gold",
                                    f"HUMAN: question {e.index}?") for e in run.examples]
            store.store_run(eval_id, "r0", run)
            store.record_evaluation(EvaluationRecord(
                eval_id=eval_id, status="completed", experiment_id="run-7", model_name="m", model_source="/models/m",
                params_hash=f"{step:064x}", engine_version="0.5.4", datasets=["tiny_qa", "tiny_mcq"],
                checkpoint_series="run-7", checkpoint_step=1000 * step,
                provenance={"generation": {"max_out_len": 32 * step}}, labels={"step": str(1000 * step)},
            ))
        store.record_evaluation(EvaluationRecord(eval_id="broken-1", status="failed", model_name="m",
                                                 reason="run r0 failed: out of memory"))
    finally:
        store.close()


def _run(served: ServeProcess, argv: list[str], request_file: Path) -> subprocess.CompletedProcess[str]:
    args = [str(request_file) if a == "REQUEST" else a for a in argv]
    return subprocess.run([sys.executable, "-m", "budeval.cli.main", *args, "--verbose"], env=served.env,
                          capture_output=True, text=True, timeout=120, check=False)


def _dry_run(served: ServeProcess, request: dict[str, object]) -> httpx.Response:
    body = {k: v for k, v in request.items() if v is not None}
    return httpx.post(served.info["api_url"] + "/evals", params={"dry_run": "true"}, json=body,
                      headers={"authorization": f"Bearer {served.token}"}, timeout=60)


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(line for line in done.stderr.splitlines() if line.startswith("budeval: error:"))


def _other_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr lines that are not the command's own ``budeval:`` messages (its error, ``--verbose``'s note)."""
    return [line for line in done.stderr.splitlines() if not line.startswith("budeval:")]


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[subprocess.CompletedProcess[str],
                                                                                subprocess.CompletedProcess[str]]]]:
    """Each command's run without the service, then while it runs."""
    data_dir = tmp_path_factory.mktemp("reads") / "data"
    data_dir.mkdir()
    _fill(data_dir)
    request_file = data_dir.parent / "request.json"
    request_file.write_text(json.dumps(REQUEST))
    suites = data_dir.parent / "suites"
    suites.mkdir()
    served = ServeProcess(data_dir, serve_env(data_dir, "process", BUDEVAL_SUITES_PATH=str(suites)))
    alone = {name: _run(served, argv, request_file) for name, argv in COMMANDS}
    served.start()
    try:
        served.wait_ready(timeout=120)
        serving = {name: _run(served, argv, request_file) for name, argv in COMMANDS}
        # a write command names the holder instead of chDB's bare lock error
        migrate = served.cli("migrate")
        # a suite added while the service runs is known to it without a restart
        plan = {**REQUEST, "datasets": None, "suite": "added-later"}
        before = _dry_run(served, plan)
        (suites / "added.yaml").write_text("name: added-later\ndatasets: [tiny_mcq]\n")
        after = _dry_run(served, plan)
    finally:
        served.stop()
    assert migrate.returncode == 1 and "held by another process" in migrate.stderr, migrate.stderr
    assert before.status_code == 422 and "added-later" in before.text, before.text
    assert after.status_code == 200 and [d["name"] for d in after.json()["datasets"]] == ["tiny_mcq"], after.text
    yield {name: (alone[name], serving[name]) for name, _ in COMMANDS}


@pytest.mark.parametrize("name", [name for name, _ in COMMANDS])
def test_same_output_with_and_without_the_service(both: dict[str, tuple[subprocess.CompletedProcess[str],
                                                                             subprocess.CompletedProcess[str]]],
                                                  name: str) -> None:
    alone, serving = both[name]
    assert alone.returncode == serving.returncode, (alone.stderr, serving.stderr)
    assert alone.stdout == serving.stdout
    assert _error_line(alone) == _error_line(serving)
    # nothing else on stderr either: no log line of the HTTP client per request (``httpx`` logs at INFO)
    assert _other_lines(alone) == _other_lines(serving) == [], (alone.stderr, serving.stderr)
    assert "directly" in alone.stderr and "through its API" not in alone.stderr, alone.stderr
    assert "through its API at http://127.0.0.1:" in serving.stderr, serving.stderr


def test_the_outputs_carry_the_data(both: dict[str, tuple[subprocess.CompletedProcess[str],
                                                          subprocess.CompletedProcess[str]]]) -> None:
    """The compared outputs are real answers (a comparison of two empty outputs would prove nothing)."""
    assert both["results"][0].returncode == 0 and "50.00" in both["results"][0].stdout
    examples = json.loads(both["results-json-examples"][0].stdout)
    assert len(examples["scores"]) == 2 and len(examples["examples"]) == 6
    assert both["leaderboard"][0].stdout.count("\n") == 2 and "tiny_mcq" in both["leaderboard"][0].stdout
    assert "correct->wrong" in both["compare"][0].stdout
    assert "max_out_len" in both["explain"][0].stdout
    assert json.loads(both["gate-json"][0].stdout)["datasets"]
    assert both["gate-unknown"][0].returncode == 3
    assert "3 checkpoints" in both["series"][0].stdout
    assert json.loads(both["plan"][0].stdout)["valid"] is True
    assert both["results-unknown"][0].returncode == 1 and "nope-1" in _error_line(both["results-unknown"][0])


def test_results_of_an_evaluation_without_scores_says_why_and_fails(
    both: dict[str, tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]],
) -> None:
    for done in both["results-failed"]:
        assert done.returncode == 1
        assert _error_line(done) == (
            "budeval: error: broken-1 has no scores: it is failed (run r0 failed: out of memory)"
        )
