"""kill -9 of the whole `budeval serve` process at each step of an evaluation, then a restart: it completes once.

Real processes throughout: `budeval serve` (embedded sidecar with SQLite state, chDB store, folder archive, local
backend) is started as a subprocess; the crash is a real SIGKILL, injected at a named step through
``BUDEVAL_FAULT_KILL_AT`` (budeval/workflow/faults.py; fires once thanks to a marker file) or sent by the test while the
run is in progress. The OpenCompass run is a stand-in script that copies a real OpenCompass output folder and counts
its starts. After the restart the test proves: the run started once, the score and prediction rows are stored once,
and exactly one `completed` event id exists.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from budeval.engine.results import parse_run
from tests.service.serve_process import FIXTURE, ServeProcess, serve_env
from tests.support import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServeProcess]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = serve_env(
        data_dir,
        "process",  # the default shape on Linux (in-process: tests/sidecar, tests/service)
        BUDEVAL_FAULT_MARKER_DIR=str(tmp_path / "faults"),
        FAKE_OC_COUNTER=str(tmp_path / "runs-started"),
    )
    svc = ServeProcess(data_dir, env)
    try:
        yield svc
    finally:
        svc.stop()


def _request(eval_id: str) -> str:
    return json.dumps(
        {
            "eval_id": eval_id,
            "model": {"name": "smollm2", "source": {"type": "huggingface", "path": "/models/smollm2"}},
            "datasets": ["tiny_qa"],
            "timeout_s": 900,
        }
    )


def _stored_rows(service: ServeProcess, eval_id: str) -> tuple[int, int]:
    """(score rows, prediction rows) read in a separate process: chDB allows one process per data directory."""
    code = (
        "import sys, json\n"
        "from budeval.config import Settings\n"
        "from budeval.storage.factory import open_store\n"
        "store = open_store(Settings.from_env().resolved_store_dsn())\n"
        "counts = {t: store.count(t, sys.argv[1], final=True) for t in ('scores', 'predictions')}\n"
        "print(json.dumps(counts))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, eval_id], env=service.env, capture_output=True, text=True, timeout=120, check=True
    )
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    return int(counts["scores"]), int(counts["predictions"])


def _expected_rows() -> tuple[int, int]:
    parsed = parse_run(FIXTURE)
    return len(parsed.metrics), sum(len(b) for b in parsed.prediction_batches())


STEPS = [
    "submit_run:after",  # the run was started, the service died before the workflow heard of it
    "during_run",  # killed by the test while the OpenCompass process is running
    "extract_run",
    "store_run",
    "store_run:after",  # rows written, the activity's completion lost
    "archive_evaluation",
    "publish_event.completed",
    "publish_event.completed:after",  # event published, the activity's completion lost
]


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_each_step_then_restart_completes_exactly_once(service: ServeProcess, step: str) -> None:
    eval_id = "crash-" + step.replace("_", "-").replace(".", "-").replace(":", "-")
    if step == "during_run":
        service.env["FAKE_OC_SLEEP"] = "8"
        service.start()
    else:
        service.start(BUDEVAL_FAULT_KILL_AT=step)
    service.wait_ready()
    submitted = service.cli("submit", "-", stdin=_request(eval_id))
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr

    if step == "during_run":
        pid_file = service.data_dir / "results" / eval_id / "r0" / ".budeval" / "pid"
        wait_until(pid_file.is_file, timeout=120, what="the run to start")
        assert service.proc is not None
        service.proc.send_signal(signal.SIGKILL)
    assert service.wait_died() == -signal.SIGKILL, service.tail()

    service.start()  # no fault this time; the run (if any) kept going on its own
    service.wait_ready()

    def completed() -> bool:
        return any(e["type"].endswith(".completed") for e in service.events(eval_id))

    wait_until(completed, timeout=240, what=f"{eval_id} completed after the restart")
    events = service.events(eval_id)
    completed_ids = {e["id"] for e in events if e["type"].endswith(".completed")}
    assert completed_ids == {f"{eval_id}.completed"}
    assert not [e for e in events if e["type"].endswith((".failed", ".rejected"))], events
    done = next(e for e in events if e["type"].endswith(".completed"))
    assert done["data"]["status"] == "completed", done

    runs_started = Path(service.env["FAKE_OC_COUNTER"]).read_text().splitlines()
    assert len(runs_started) == 1, runs_started

    service.stop()
    assert _stored_rows(service, eval_id) == _expected_rows()
