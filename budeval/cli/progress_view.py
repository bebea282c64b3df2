"""How ``budeval status`` and ``budeval submit --wait`` show a running evaluation's progress (one place).

Input: the ``progress`` of ``GET /evals/{id}`` (``done``, ``total``, ``eta_s``, ``runs[].tasks[]``; shapes in
budeval/engine/results/progress.py) or the data of a live ``progress`` event (the same per run, ``live: true``).
"""

from __future__ import annotations

from typing import Any


def eta(seconds: Any) -> str:
    """``ETA 1m05s``-style text; ``ETA ?`` when unknown."""
    if not isinstance(seconds, int | float):
        return "ETA ?"
    whole = round(seconds)
    if whole >= 3600:
        return f"ETA {whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"ETA {whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"ETA {whole}s"


def count(done: Any, total: Any, estimated: bool = False) -> str:
    """``4/5 examples``; ``4/~8`` while the total is the progress bar's estimate; ``4/?`` while unknown."""
    shown = "?" if total is None else (f"~{total}" if estimated else str(total))
    return f"{done}/{shown} examples"


def task_line(task: dict[str, Any]) -> str:
    """One dataset: ``  tiny_qa (smollm2): inferring 4/~8 examples, batch 1/2, ETA 12s``."""
    text = f"  {task.get('dataset')} ({task.get('model')}): {task.get('stage')} "
    text += count(task.get("done", 0), task.get("total"), bool(task.get("estimated")))
    if task.get("stage") == "inferring":
        if task.get("batches_total") is not None:
            text += f", batch {task.get('batches_done')}/{task.get('batches_total')}"
        text += f", {eta(task.get('eta_s'))}"
    return text


def progress_lines(progress: dict[str, Any] | None) -> list[str]:
    """The lines ``budeval status`` prints under a running evaluation; [] when there is nothing to show."""
    if not progress:
        return []
    runs = progress.get("runs") or []
    estimated = any(t.get("estimated") for run in runs for t in run.get("tasks") or [])
    done, total = progress.get("done", 0), progress.get("total")
    lines = [f"progress: {count(done, total, estimated)}, {eta(progress.get('eta_s'))}"]
    for run in runs:
        waiting = max(0, int(run.get("datasets_planned") or 0) - len({t.get("dataset") for t in run["tasks"]}))
        lines.append(f" run {run.get('run_id')}" + (f" ({waiting} dataset(s) not started)" if waiting else ""))
        lines.extend(task_line(task) for task in run.get("tasks") or [])
    return lines


def event_line(data: dict[str, Any]) -> str:
    """A live ``progress`` event as one line: ``  run r0: 4/~8 examples, ETA 12s``."""
    run = data.get("progress") or {}
    estimated = any(t.get("estimated") for t in run.get("tasks") or [])
    return f"  run {data.get('run_id')}: {count(data.get('done', 0), data.get('total'), estimated)}, " \
           f"{eta(data.get('eta_s'))}"
