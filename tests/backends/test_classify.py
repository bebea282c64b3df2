"""classify_exit over the committed real OpenCompass fixtures: what each outcome becomes as a RunState."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from budeval.backends.local_classify import classify_exit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "opencompass"


def classify(work: Path) -> tuple[str, str | None, str, str]:
    code = int((work / ".budeval" / "exit_code").read_text())
    state = classify_exit("e1", "r0", work, code, work / ".budeval" / "output.log")
    return state.phase, state.reason_class, state.message, state.log_excerpt


@pytest.mark.parametrize("name", ["qa_chat", "mcq", "reuse"])
def test_clean_runs_succeed(name: str) -> None:
    # reuse: its console log still holds the first pass's ERROR lines; the newest summary has no gap, so no message.
    assert classify(FIXTURES / name) == ("succeeded", None, "", "")


@pytest.mark.parametrize(
    ("name", "failed"), [("two_models_one_fails", "missing-model"), ("two_datasets_one_fails", "bad_eval_ds")]
)
def test_partial_runs_succeed_with_an_error_excerpt(name: str, failed: str) -> None:
    phase, reason, message, excerpt = classify(FIXTURES / name)
    assert (phase, reason, message) == ("succeeded", None, "some tasks failed")
    assert failed in excerpt
    assert len(excerpt) <= 2000


def test_aborted_cli_is_a_crash_with_the_traceback() -> None:
    phase, reason, message, excerpt = classify(FIXTURES / "aborted")
    assert (phase, reason) == ("failed", "crash")
    assert "code 1" in message
    assert "JSONDecodeError" in excerpt


def test_the_results_files_decide_with_the_newest_summary(tmp_path: Path) -> None:
    work = tmp_path / "reuse"
    shutil.copytree(FIXTURES / "reuse", work)
    summaries = sorted(work.glob("*/summary/summary_*.csv"))
    assert len(summaries) == 2
    summaries[-1].unlink()  # only the first pass's summary (all '-') is left ...
    assert classify(work)[:2] == ("succeeded", None)  # ... but the re-run's results file holds the score
    for results in work.glob("*/results/*/*.json"):
        results.unlink()
    phase, reason, _, excerpt = classify(work)
    assert (phase, reason) == ("failed", "task_errors")
    assert "ERROR" in excerpt


def test_exit_zero_and_nothing_written_is_no_scores(tmp_path: Path) -> None:
    state = classify_exit("e1", "r0", tmp_path, 0, None)
    assert (state.phase, state.reason_class) == ("failed", "no_scores")


def test_an_endpoint_that_stopped_answering_is_endpoint_unavailable(tmp_path: Path) -> None:
    """The reuse fixture without scores, its infer log ending as OpenCompass's OpenAI model ends a prompt whose every
    attempt failed (opencompass/models/openai_api.py): not a generic task error, the endpoint's."""
    work = tmp_path / "reuse"
    shutil.copytree(FIXTURES / "reuse", work)
    for path in [*work.glob("*/summary/summary_*.csv"), *work.glob("*/results/*/*.json")]:
        path.unlink()
    (log,) = list(work.glob("*/logs/infer/*/*.out"))[-1:]
    log.write_text(log.read_text() + "\n12/01 10:33:56 - OpenCompass - ERROR - openai_api.py - _generate - 957 - "
                   "Connection error.\nRuntimeError: Calling OpenAI API failed after retrying for 3 times. Check the "
                   "logs for details.\n")
    phase, reason, message, excerpt = classify(work)
    assert (phase, reason) == ("failed", "endpoint_unavailable")
    assert "endpoint" in message and "Calling OpenAI API failed after retrying" in excerpt
