"""One real evaluation: SmolLM2-135M-Instruct on the bundled tiny_qa through LocalBackend and real OpenCompass."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest

from budeval.backends.base import RunSpec
from budeval.backends.local import LocalBackend
from budeval.config import Settings
from budeval.engine.render import render_config
from budeval.schemas.request import EvalRequest

pytestmark = [pytest.mark.opencompass, pytest.mark.slow]


def test_tiny_qa_with_the_real_model(opencompass_env: dict[str, str], tmp_path: Path) -> None:
    request = EvalRequest.model_validate(
        {
            "eval_id": "real-tiny-qa",
            "model": {
                "name": "smollm2-135m-instruct",
                "source": {"type": "huggingface", "path": opencompass_env["BUDEVAL_MODEL_PATH"], "mode": "chat"},
            },
            "datasets": ["tiny_qa"],
            "generation": {"max_out_len": 24, "batch_size": 8},
            # The default GPU request: on this CPU host the backend must still run it.
        }
    )
    settings = Settings(
        data_dir=tmp_path, opencompass_python=opencompass_env["BUDEVAL_OPENCOMPASS_PYTHON"], max_parallel_runs=1
    )
    backend = LocalBackend(settings)
    spec = RunSpec(
        eval_id=request.eval_id,
        run_id="r0",
        config_text=render_config(request, ["tiny_qa"]),
        model=request.model,
        datasets=["tiny_qa"],
        resources=request.resources,
    )
    backend.submit(spec)
    deadline = time.monotonic() + 900
    state = backend.get(spec.eval_id, spec.run_id)
    while not state.finished and time.monotonic() < deadline:
        time.sleep(2)
        state = backend.get(spec.eval_id, spec.run_id)
    assert state.phase == "succeeded", (state, (backend.work_dir("real-tiny-qa", "r0") / ".budeval/output.log"))
    summaries = list(backend.work_dir("real-tiny-qa", "r0").glob("*/summary/summary_*.csv"))
    assert len(summaries) == 1
    with summaries[0].open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["dataset", "version", "metric", "mode", "smollm2-135m-instruct"]
    assert rows[1][0] == "tiny_qa" and rows[1][2] == "accuracy"
    assert 0.0 <= float(rows[1][4]) <= 100.0
    assert list(backend.work_dir("real-tiny-qa", "r0").glob("*/predictions/smollm2-135m-instruct/tiny_qa.json"))
