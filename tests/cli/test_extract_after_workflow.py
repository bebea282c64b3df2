"""`budeval extract` into an evaluation the workflow recorded: the real `budeval serve` (embedded sidecar, chDB,
folder archive, local backend running tests/service/fake_opencompass.sh, which copies real OpenCompass output) runs
an evaluation through the pub/sub topic; once the service is stopped (chDB: one process per data directory), the
`budeval extract` command is pointed at the same run folder and evaluation id.

Refused with one line without --force; with it, the rows are the ones the workflow wrote (replaced, not duplicated)
and the evaluation's row is unchanged but for the record of the extraction (``provenance.extracts``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from budeval.config import Settings
from budeval.storage.factory import open_store
from tests.cli.support import budeval_cmd
from tests.service.serve_process import ServeProcess, serve_env

EVAL_ID = "wf-extract-1"


def _snapshot(data_dir: Path) -> dict[str, Any]:
    """Everything the store holds about the evaluation (read in this process; closed before the next command)."""
    store = open_store(Settings(data_dir=data_dir).resolved_store_dsn())
    try:
        return {
            "record": store.get_evaluation(EVAL_ID),
            "scores": store.results(EVAL_ID),
            "statuses": store.statuses(EVAL_ID),
            "examples": store.examples(EVAL_ID, 1000),
            "counts": {t: store.count(t, EVAL_ID) for t in ("scores", "dataset_status", "predictions")},
        }
    finally:
        store.close()


def test_extract_after_the_workflow_gives_the_workflows_rows(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = serve_env(data_dir, "embedded")
    served = ServeProcess(data_dir, env).start()
    try:
        served.wait_ready(timeout=120)
        request = {
            "eval_id": EVAL_ID,
            "model": {"name": "m", "source": {"type": "huggingface", "path": "/models/m"}},
            "datasets": ["tiny_qa"],
            "timeout_s": 600,
        }
        done = served.cli("submit", "-", "--wait", "--timeout", "150", stdin=json.dumps(request))
        assert done.returncode == 0, done.stdout + done.stderr + served.tail()
        assert f"{EVAL_ID}: completed" in done.stdout, done.stdout
    finally:
        served.stop()
    assert served.proc is not None and served.proc.returncode == 0, served.tail()

    before = _snapshot(data_dir)
    record = before["record"]
    assert record is not None and record.status == "completed" and before["scores"] and before["examples"]
    assert [r["run_id"] for r in record.provenance["runs"]] == ["r0"]

    run_dir = data_dir / "results" / EVAL_ID / "r0"
    refused = budeval_cmd("extract", str(run_dir), "--eval-id", EVAL_ID, env=env)
    assert refused.returncode == 1 and refused.stdout == "" and "Traceback" not in refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("budeval: error: ") and "recorded by the workflow" in line and "--force" in line
    assert _snapshot(data_dir) == before

    forced = budeval_cmd("extract", str(run_dir), "--eval-id", EVAL_ID, "--force", "--json", env=env)
    assert forced.returncode == 0, forced.stderr
    doc = json.loads(forced.stdout)
    assert doc["status"] == "completed" and doc["archive"]["error"] is None
    after = _snapshot(data_dir)
    for key in ("scores", "statuses", "examples", "counts"):
        assert after[key] == before[key], key
    again = after["record"]
    assert again is not None
    extracts = again.provenance.pop("extracts")
    assert extracts["r0"]["source"] == str(run_dir.resolve())
    assert again == record  # same status, identity, archive, clocks; provenance of the same shape and values
