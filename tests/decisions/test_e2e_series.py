"""End to end: a series of four evaluations (their requests' ``checkpoint`` block) submitted through the pub/sub topic
to the real ``budeval serve`` (embedded sidecar, chDB, folder archive, local backend), the last one with a ``gate``
block; then the series and the gate read back from ClickHouse through the HTTP API and, after the service stopped,
the CLI.

The local backend runs tests/service/fake_opencompass.sh instead of OpenCompass: each checkpoint's run copies a
different real OpenCompass output of ``tiny_mcq`` (the model path names it), so the reader, store and queries see real
files: greedy, greedy with n=2 replicas, sampled with n=2, G-Pass sampled.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.serve_process import ROOT, ServeProcess, serve_env

CHECKPOINTS = (
    (10, "opencompass__mcq"),  # examples 0-3: wrong, wrong, wrong, right
    (20, "realworld__n-replicas__run"),  # the same, two replicas each
    (30, "realworld__n-replicas__run_sampled"),  # example 0 right in one replica of two: counted right
    (40, "realworld__gpass-sampled-replicas__run"),  # example 0 half right, example 3 now wrong
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    data_dir = tmp_path_factory.mktemp("e2e-series")
    env = serve_env(data_dir, "embedded", FAKE_OC_FIXTURES_ROOT=str(ROOT / "tests" / "fixtures"))
    process = ServeProcess(data_dir, env).start()
    try:
        yield process.wait_ready(timeout=120)
    finally:
        process.stop()


def _request(step: int, fixture: str, **extra: Any) -> dict[str, Any]:
    return {
        "eval_id": f"e2e-ck-{step}",
        "experiment_id": "e2e-series",  # for the gate's baseline rule best:<experiment>
        "checkpoint": {"series": "e2e-series", "step": step, "tokens_seen": step * 1000},
        "model": {
            "name": f"ckpt-{step}",
            "source": {"type": "huggingface", "path": f"/models/budeval-fixture-{fixture}"},
        },
        "datasets": ["tiny_mcq"],
        "timeout_s": 600,
        "force": True,
        **extra,
    }


def test_series_and_gate_after_four_evaluations_through_the_topic(served: ServeProcess, tmp_path: Path) -> None:
    for step, fixture in CHECKPOINTS:
        extra = {"gate": {"baseline": "e2e-ck-30", "seed": 1}} if step == 40 else {}
        file = tmp_path / f"ck-{step}.json"
        file.write_text(json.dumps(_request(step, fixture, **extra)))
        done = served.cli("submit", str(file), "--wait", "--timeout", "150")
        assert done.returncode == 0, done.stdout + done.stderr + served.tail()
        assert f"e2e-ck-{step}: completed" in done.stdout, done.stdout

    series = served.api("GET", "/series/e2e-series").json()
    assert [c["eval_id"] for c in series["checkpoints"]] == [f"e2e-ck-{s}" for s, _ in CHECKPOINTS]
    assert [(c["step"], c["tokens_seen"]) for c in series["checkpoints"]] == [(s, s * 1000) for s, _ in CHECKPOINTS]
    [mcq] = series["datasets"]
    assert mcq["dataset"] == "tiny_mcq"
    assert [p["score"] for p in mcq["points"]] == [25.0, 25.0, 37.5, 12.5]
    assert [(p["learned"], p["forgotten"]) for p in mcq["points"]] == [(0, 0), (0, 0), (1, 0), (0, 1)]
    assert mcq["kinds"] == {"easy": 0, "hard": 2, "learned": 1, "forgotten": 1, "unstable": 0}
    [learned] = mcq["examples"]["learned"]
    assert learned["example_index"] == 0 and learned["first_right_eval_id"] == "e2e-ck-30"
    assert learned["prompt"].startswith("HUMAN: Question: What is 2+2?")
    assert mcq["best"]["eval_id"] == "e2e-ck-30"

    gate = served.api("GET", "/gate?baseline=best:e2e-series&candidate=e2e-ck-40").json()
    assert gate["baseline"] == "e2e-ck-30" and gate["baseline_rule"] == "best:e2e-series"
    [row] = gate["datasets"]
    # replicas: the cluster bootstrap; example 3 goes from 2/2 to 0/2 right (-100 points), the rest are unchanged
    assert row["method"] == "bootstrap" and row["examples"] == 4 and row["delta"] == -25.0
    assert gate["verdict"] == "inconclusive" and gate["exit_code"] == 2

    events = served.events("e2e-ck-40")
    kinds = [str(e["type"]).removeprefix("io.budeval.evaluation.") for e in events]
    assert kinds[-2:] == ["completed", "gate.inconclusive"], kinds
    assert events[-1]["data"]["baseline"] == "e2e-ck-30" and events[-1]["data"]["datasets"][0]["delta"] == -25.0

    served.stop()  # chDB: one process per data directory; the CLI reads the same store afterwards
    cli = served.cli("gate", "e2e-ck-10", "e2e-ck-20", "--json")
    assert cli.returncode == 2, cli.stderr  # the same verdicts, but 4 examples cannot show "no difference"
    assert json.loads(cli.stdout)["datasets"][0]["delta"] == 0.0
    cli = served.cli("series", "e2e-series", "--dataset", "tiny_mcq")
    assert cli.returncode == 0 and "first significant gain over the first checkpoint: none" in cli.stdout, cli.stderr
