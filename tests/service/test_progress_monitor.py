"""The service's live progress: runs seen running are read and their changed progress published once per change
(budeval/service/progress.py). The run folder is the in-progress copy of a real run (tests/engine/test_progress.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from budeval.backends.base import RunState
from budeval.backends.local import LocalBackend
from budeval.config import Settings
from budeval.engine.results.progress import ProgressReader
from budeval.events.cloudevents import CloudEvent
from budeval.service.progress import ProgressMonitor, evaluation_progress
from tests.engine.test_progress import MODEL, STAMP, _mid_run


class Recorded:
    """Records what is published (the e2e test proves the real topic: tests/e2e/test_live_progress.py)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, CloudEvent]] = []

    def publish(self, topic: str, event: CloudEvent) -> None:
        self.events.append((topic, event))


def _backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(Settings(data_dir=tmp_path / "data", results_root=tmp_path / "results"))


def test_a_running_run_is_published_once_per_change_and_forgotten_when_finished(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    work = backend.work_dir("ev-1", "r0")
    work.parent.mkdir(parents=True)
    shutil.move(_mid_run(tmp_path / "src", 2), work)
    published = Recorded()
    monitor = ProgressMonitor(backend, published, "budeval.events", interval_s=0)
    monitor.submitted(RunState(eval_id="ev-1", run_id="r0", phase="running"), datasets=1)

    assert monitor.run_once() == 1
    assert monitor.run_once() == 0  # unchanged: nothing new
    topic, event = published.events[0]
    data: dict[str, Any] = event.data  # type: ignore[assignment]
    assert topic == "budeval.events" and event.type.endswith(".progress") and data["live"] is True
    assert (data["eval_id"], data["run_id"], data["done"], data["total"]) == ("ev-1", "r0", 2, 4)
    assert data["progress"]["tasks"][0]["estimated"] is True

    tmp = work / STAMP / "predictions" / MODEL / "tmp_tiny_qa.jsonl"
    with tmp.open("a") as f:
        f.write(json.dumps({"idx": 2, "prediction": "x"}) + "\n")
    assert monitor.run_once() == 1 and published.events[-1][1].data["done"] == 3  # type: ignore[index]
    assert len({e.id for _, e in published.events}) == 2  # deterministic ids, one per state

    monitor.seen(RunState(eval_id="ev-1", run_id="r0", phase="succeeded"))
    with tmp.open("a") as f:
        f.write(json.dumps({"idx": 3, "prediction": "y"}) + "\n")
    assert monitor.run_once() == 0  # finished: its own end event is the workflow's


def test_the_api_view_sums_the_runs_of_an_evaluation(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    for run in ("r0", "r1"):
        work = backend.work_dir("ev-2", run)
        work.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(_mid_run(tmp_path / run, 4), work)
    (backend.work_dir("ev-2", "r0").parent / ".hidden").mkdir()
    view = evaluation_progress(ProgressReader(), backend, "ev-2", {"r0": 1})
    assert [r["run_id"] for r in view["runs"]] == ["r0", "r1"]
    assert (view["done"], view["total"], view["eta_s"]) == (8, 16, 1)
    assert evaluation_progress(ProgressReader(), backend, "no-such-eval") == {
        "done": 0, "total": None, "eta_s": None, "runs": []}
