"""End to end with REAL evaluations: four checkpoints of a series, each a real OpenCompass run of the main job's model
(SmolLM2-135M-Instruct, in the OpenCompass venv) on the bundled ``tiny_qa`` and ``tiny_mcq``, submitted through the
pub/sub topic to the real ``budeval serve`` (embedded sidecar, chDB, folder archive, local backend); then ``series``
and ``gate`` read back from ClickHouse through the HTTP API and, after the service stopped, the CLI.

The checkpoints stand in for a training run by generation length: ``max_out_len`` 1, 3, 8 and 24 tokens, so that the
short ones cut answers off and the per-example verdicts change along the series. The model's answers are not
asserted (they are the model's); what is asserted is what must hold for any answers: four points per dataset in step
order, transitions that add up to the change in right examples, kinds that cover every example once, a gate verdict
with the exit code docs/decisions.md gives it, and the API and the CLI agreeing.

Runtime: four OpenCompass runs of a 135M model on 9 examples, ``max_parallel_runs`` 2 (about a minute per run on
this shared 2-core machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.serve_process import ServeProcess, serve_env

CACHE = Path(os.environ.get("BUDEVAL_CACHE") or Path.home() / ".cache" / "budeval")
OPENCOMPASS_PYTHON = CACHE / "opencompass-venv" / "bin" / "python"
MODEL = CACHE / "models" / "SmolLM2-135M-Instruct"

pytestmark = [
    pytest.mark.opencompass,
    pytest.mark.slow,
    pytest.mark.usefixtures("opencompass_env"),  # installs the venv + model on a cold machine (tests/conftest.py)
]

SERIES = "smollm2-real"
#: (step, max_out_len)
CHECKPOINTS = ((100, 1), (200, 3), (300, 8), (400, 24))
DATASETS = ("tiny_mcq", "tiny_qa")
#: docs/decisions.md: exit codes of `budeval gate`
EXIT_CODES = {"no-difference": 0, "improvement": 0, "regression": 1, "inconclusive": 2}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    data_dir = tmp_path_factory.mktemp("e2e-series-real")
    env = serve_env(
        data_dir,
        "embedded",
        BUDEVAL_OPENCOMPASS_PYTHON=str(OPENCOMPASS_PYTHON),
        BUDEVAL_MODELS_ROOT=str(MODEL.parent),
        BUDEVAL_MAX_PARALLEL_RUNS="2",
    )
    process = ServeProcess(data_dir, env).start()
    try:
        yield process.wait_ready(timeout=180)
    finally:
        process.stop()


def _request(step: int, max_out_len: int) -> dict[str, Any]:
    return {
        "eval_id": f"real-ck-{step}",
        "checkpoint": {"series": SERIES, "step": step, "tokens_seen": step * 2048},
        "model": {"name": "smollm2-135m-instruct",
                  "source": {"type": "huggingface", "path": str(MODEL), "mode": "chat"}},
        "datasets": list(DATASETS),
        "split": "single",  # one OpenCompass process (one model load) per checkpoint
        "generation": {"max_out_len": max_out_len, "batch_size": 8},
        "resources": {"gpus": 0},
        "timeout_s": 1800,
        "force": True,
    }


def test_real_series_and_gate_through_the_topic(served: ServeProcess, tmp_path: Path) -> None:
    # all four on the topic at once (the service runs max_parallel_runs of them), each followed by `submit --wait`
    waiting = []
    for step, max_out_len in CHECKPOINTS:
        file = tmp_path / f"ck-{step}.json"
        file.write_text(json.dumps(_request(step, max_out_len)))
        command = [sys.executable, "-m", "budeval.cli.main", "submit", str(file), "--wait", "--timeout", "1500"]
        waiting.append((step, subprocess.Popen(command, env=served.env, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True)))
    for step, proc in waiting:
        out, err = proc.communicate(timeout=1600)
        assert proc.returncode == 0, out + err + served.tail()
        assert f"real-ck-{step}: completed" in out, out

    series = served.api("GET", f"/series/{SERIES}").json()
    assert [(c["eval_id"], c["step"], c["tokens_seen"]) for c in series["checkpoints"]] == [
        (f"real-ck-{s}", s, s * 2048) for s, _ in CHECKPOINTS
    ]
    assert [d["dataset"] for d in series["datasets"]] == list(DATASETS)
    total_flips = 0
    for ds in series["datasets"]:
        points = ds["points"]
        assert [p["eval_id"] for p in points] == [f"real-ck-{s}" for s, _ in CHECKPOINTS]
        n = points[0]["examples"]
        assert n == {"tiny_mcq": 4, "tiny_qa": 5}[ds["dataset"]] and all(p["examples"] == n for p in points)
        right = [round(p["score"] * n / 100) for p in points]
        for before, after, p in zip(right, right[1:], points[1:], strict=False):
            assert after - before == p["learned"] - p["forgotten"], (ds["dataset"], points)
            assert p["delta_vs_first"] == pytest.approx(100 * (after - right[0]) / n)
            assert 0 <= p["p_adjusted"] <= 1
        assert sum(ds["kinds"].values()) == n
        assert ds["flips"] == sum(p["learned"] + p["forgotten"] for p in points)
        assert all(p["ci_low"] <= p["score"] <= p["ci_high"] for p in points)
        total_flips += ds["flips"]
    # a one-token answer cannot hold a sentence: the verdicts do change along the series
    assert total_flips > 0, series

    gate = served.api("GET", "/gate?baseline=real-ck-100&candidate=real-ck-400").json()
    assert [d["dataset"] for d in gate["datasets"]] == list(DATASETS)
    assert all(d["method"] == "mcnemar" for d in gate["datasets"])
    assert gate["verdict"] in EXIT_CODES and gate["exit_code"] == EXIT_CODES[gate["verdict"]]

    served.stop()  # chDB: one process per data directory; the CLI reads the same store afterwards
    cli = served.cli("gate", "real-ck-100", "real-ck-400", "--json")
    assert cli.returncode == gate["exit_code"], cli.stderr
    assert json.loads(cli.stdout)["verdict"] == gate["verdict"]
    cli = served.cli("series", SERIES, "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["datasets"] == series["datasets"]
    cli = served.cli("series", SERIES, "--dataset", "tiny_qa")
    assert cli.returncode == 0 and f"series {SERIES}: 4 checkpoints" in cli.stdout, cli.stderr
