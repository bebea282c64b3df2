"""A run's live progress read from OpenCompass's files (budeval/engine/results/progress.py).

The in-progress folder is cut from a real run (tests/fixtures/opencompass/qa_chat: 5 examples in 2 batches of 4):
its infer log up to the moment the first batch ended, and the checkpoint ``tmp_tiny_qa.jsonl`` OpenCompass appends
after each batch (``GenInferencerOutputHandler.write_to_jsonl``: ``{"idx": i, **result}`` per line), made from the
same run's predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

from budeval.engine.results.progress import ProgressReader, read_bar

QA = Path(__file__).resolve().parents[1] / "fixtures" / "opencompass" / "qa_chat"
STAMP = "20261123_081443"
MODEL = "smollm2-135m-instruct"


def _mid_run(tmp_path: Path, examples_done: int) -> Path:
    """A copy of the real run as it was after its first batch: the log up to the 1/2 bar, the checkpoint with
    ``examples_done`` lines, no predictions, results or summary yet."""
    work = tmp_path / "r0"
    folder = work / STAMP
    (folder / "logs" / "infer" / MODEL).mkdir(parents=True)
    (folder / "predictions" / MODEL).mkdir(parents=True)
    log = (QA / STAMP / "logs" / "infer" / MODEL / "tiny_qa.out").read_bytes()
    cut = log.index(b"1/2 [") + log[log.index(b"1/2 [") :].index(b"]") + 1
    (folder / "logs" / "infer" / MODEL / "tiny_qa.out").write_bytes(log[:cut])
    predictions = json.loads((QA / STAMP / "predictions" / MODEL / "tiny_qa.json").read_text())
    lines = [json.dumps({"idx": int(i), **predictions[i]}) for i in list(predictions)[:examples_done]]
    (folder / "predictions" / MODEL / "tmp_tiny_qa.jsonl").write_text("\n".join(lines) + "\n")
    return work


def test_the_bar_of_a_real_log_is_read_after_inference_starts() -> None:
    bar = read_bar(QA / STAMP / "logs" / "infer" / MODEL / "tiny_qa.out")
    assert bar is not None and (bar.steps, bar.total) == (2, 2) and bar.remaining_s == 0


def test_a_finished_run_reports_every_example_done_and_evaluated() -> None:
    progress = ProgressReader().run("r0", QA, datasets_planned=1)
    assert [(t.dataset, t.stage, t.done, t.total, t.estimated) for t in progress.tasks] == [
        ("tiny_qa", "evaluated", 5, 5, False)
    ]
    assert (progress.done, progress.total, progress.eta_s) == (5, 5, 0)


def test_a_run_mid_inference_reports_done_below_total_and_an_eta(tmp_path: Path) -> None:
    reader = ProgressReader()
    progress = reader.run("r0", _mid_run(tmp_path, 4), datasets_planned=2)
    (task,) = progress.tasks
    assert (task.stage, task.done, task.batches_done, task.batches_total) == ("inferring", 4, 1, 2)
    assert task.total == 8 and task.estimated  # 4 done + 1 batch of (at most) 4 left; the real total is 5
    assert task.eta_s == 1 and task.elapsed_s == 1  # the bar's "[00:01<00:01"
    # one planned dataset has not started: the total is unknown, its ETA counted at this one's duration
    assert progress.total is None and progress.eta_s == 1 + 2
    assert progress.as_dict()["tasks"][0]["done"] == 4


def test_the_checkpoint_is_counted_incrementally_as_it_grows(tmp_path: Path) -> None:
    reader = ProgressReader()
    work = _mid_run(tmp_path, 2)
    assert reader.run("r0", work).done == 2
    tmp = work / STAMP / "predictions" / MODEL / "tmp_tiny_qa.jsonl"
    with tmp.open("a") as f:
        f.write(json.dumps({"idx": 2, "prediction": "x"}) + "\n")
    assert reader.run("r0", work).done == 3
    tmp.write_text(json.dumps({"idx": 0}) + "\n")  # replaced (a resumed run): counted again
    assert reader.run("r0", work).done == 1


def test_a_run_that_has_not_started_has_no_tasks(tmp_path: Path) -> None:
    progress = ProgressReader().run("r0", tmp_path / "nothing", datasets_planned=2)
    assert progress.tasks == [] and progress.total is None and progress.eta_s is None
