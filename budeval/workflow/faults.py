"""Crash (and delay) injection for the recovery tests: ``kill -9`` of the whole process at a chosen activity, once.

``BUDEVAL_FAULT_KILL_AT=<activity name>`` (see :mod:`budeval.workflow.names`) makes this process SIGKILL itself when
that activity starts, or right after it did its work with ``<name>:after``. A marker file in
``BUDEVAL_FAULT_MARKER_DIR`` (default: the current directory) makes it fire only once, so the restarted process runs
through. Both are settings (``fault_kill_at``, ``fault_marker_dir``), read once per process. Unset (the normal case)
it costs one attribute lookup. It exists because "kill -9 during extract" cannot be hit
reliably by timing from outside.
"""

from __future__ import annotations

import os
import signal
import time
from functools import cache

from budeval.config import Settings


@cache
def _settings() -> Settings:
    return Settings.from_env()


def maybe_crash(activity: str, when: str = "before") -> None:
    """SIGKILL this process if ``fault_kill_at`` names this activity and moment (once: see the module doc)."""
    target = _settings().fault_kill_at
    if not target:
        return
    name, _, moment = target.partition(":")
    if name != activity or (moment or "before") != when:
        return
    marker = _settings().fault_marker_dir / f"crashed-{name}-{when}"
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def maybe_delay(step: str) -> None:
    """``fault_delay_at`` = ``<step>:<seconds>`` (``BUDEVAL_FAULT_DELAY_AT``) makes that step wait, every time, after
    writing the marker ``delaying-<step>`` in ``fault_marker_dir``: a test can race a cancel against a step that is
    known to be under way (tests/service/test_outcomes.py). Unset it costs one attribute lookup."""
    target = _settings().fault_delay_at
    if not target:
        return
    name, _, seconds = target.partition(":")
    if name != step:
        return
    marker = _settings().fault_marker_dir / f"delaying-{name}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{time.time():.3f}\n")
    time.sleep(float(seconds or "5"))
