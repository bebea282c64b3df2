"""The terminal state of a local OpenCompass run, from its exit code and its work dir (any backend can use
:func:`classify_exit`); the OpenCompass output is read through budeval's result reader and layout module."""

from __future__ import annotations

from pathlib import Path

from budeval.backends.base import FailureClass, RunPhase, RunState
from budeval.backends.local_markers import META, _Run
from budeval.engine.results import score_presence
from budeval.engine.results.layout import endpoint_failed, error_excerpt, file_excerpt

EXCERPT_CHARS = 2000


def _tail(path: Path) -> str:
    """The console log's masked tail (the excerpt a failed run reports)."""
    return file_excerpt(path, EXCERPT_CHARS)


def _make_state(
    run: _Run, phase: RunPhase, reason: FailureClass | None = None, message: str = "", excerpt: str = ""
) -> RunState:
    return RunState(
        eval_id=run.eval_id, run_id=run.run_id, phase=phase, reason_class=reason, message=message, log_excerpt=excerpt
    )


def _finished(run: _Run) -> RunState:
    try:
        code = int((run.read("exit_code") or "").strip())
    except ValueError:
        code = -1
    if run.has("timed_out"):
        return _make_state(
            run, "failed", "deadline_exceeded", "the run's timeout passed", _tail(run.file("output.log"))
        )
    return classify_exit(run.eval_id, run.run_id, run.work, code, run.file("output.log"))


def classify_exit(eval_id: str, run_id: str, work: Path, exit_code: int, console_log: Path | None) -> RunState:
    """The terminal state of an OpenCompass run from its exit code and its work dir (any backend can use this).

    Non-zero -> ``crash`` with the console tail; a numeric score in the newest summary -> ``succeeded`` (with an
    ERROR excerpt if some tasks failed); ERROR lines but no score -> ``endpoint_unavailable`` when they say an
    endpoint model's requests failed after every retry, else ``task_errors``; nothing -> ``no_scores``.
    """
    console = console_log if console_log is not None else work / META / "output.log"

    def state(phase: RunPhase, reason: FailureClass | None = None, message: str = "", excerpt: str = "") -> RunState:
        return RunState(
            eval_id=eval_id, run_id=run_id, phase=phase, reason_class=reason, message=message, log_excerpt=excerpt
        )

    if exit_code != 0:
        return state("failed", "crash", f"OpenCompass exited with code {exit_code}", _tail(console))
    scored, missing, what = score_presence(work)
    errors = error_excerpt(work, console)[:EXCERPT_CHARS]
    if scored:
        # A '-' cell is a failed task of this (newest) summary; ERROR lines alone may be from an earlier -r pass.
        return state("succeeded", None, "some tasks failed", errors) if missing else state("succeeded")
    if errors and endpoint_failed(errors):
        # The model's endpoint or a judge's (LLM-judge datasets call it from their evaluation tasks): the excerpt says.
        return state("failed", "endpoint_unavailable",
                     "an endpoint (the model's, or the judge's) did not answer after its retries; no scores", errors)
    if errors:
        return state("failed", "task_errors", "OpenCompass tasks failed; no scores", errors)
    return state("failed", "no_scores", f"OpenCompass exited 0 but wrote {what}", _tail(console))


