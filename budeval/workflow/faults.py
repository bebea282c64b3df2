"""Crash (and delay) injection for the recovery tests: ``kill -9`` of the whole process at a chosen activity, once.

``BUDEVAL_FAULT_KILL_AT=<activity name>`` (see :mod:`budeval.workflow.names`) makes this process SIGKILL itself when
that activity starts, or right after it did its work with ``<name>:after``. A marker file in
``BUDEVAL_FAULT_MARKER_DIR`` (default: the current directory) makes it fire only once, so the restarted process runs
through. Unset (the normal case) it costs one dict lookup. It exists because "kill -9 during extract" cannot be hit
reliably by timing from outside.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def maybe_crash(activity: str, when: str = "before") -> None:
    target = os.environ.get("BUDEVAL_FAULT_KILL_AT")
    if not target:
        return
    name, _, moment = target.partition(":")
    if name != activity or (moment or "before") != when:
        return
    marker = Path(os.environ.get("BUDEVAL_FAULT_MARKER_DIR", ".")) / f"crashed-{name}-{when}"
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def maybe_delay(step: str) -> None:
    """``BUDEVAL_FAULT_DELAY_AT=<step>:<seconds>`` makes that step wait, every time, after writing the marker
    ``delaying-<step>`` in ``BUDEVAL_FAULT_MARKER_DIR``: a test can race a cancel against a step that is known to be
    under way (tests/service/test_outcomes.py). Unset it costs one dict lookup."""
    target = os.environ.get("BUDEVAL_FAULT_DELAY_AT")
    if not target:
        return
    name, _, seconds = target.partition(":")
    if name != step:
        return
    marker = Path(os.environ.get("BUDEVAL_FAULT_MARKER_DIR", ".")) / f"delaying-{name}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{time.time():.3f}\n")
    time.sleep(float(seconds or "5"))
