"""``scripts/bench_workflow.py`` itself: a small run completes every evaluation and keeps the output contract.

The figures are not checked (no timing assertions); what is: every evaluation ends ``completed``, both modes are
measured, the floor runs, and the last line has exactly the format the issue asks for.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAST_LINE = re.compile(r"^evals_per_s=\d+\.\d+ p50_ms=\d+ p99_ms=\d+ poll_p50_ms=\d+$")


def test_a_small_benchmark_run_completes_every_evaluation_and_prints_the_contract(tmp_path: Path) -> None:
    args = ["--evals", "6", "--poll-evals", "2", "--poll-s", "0.3", "--concurrency", "2", "--workdir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_workflow.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert "evaluations=8 finished=8 missing=0 not_completed=0" in lines
    assert any(line.startswith("cpu per evaluation: this process ") for line in lines)
    assert any(line.startswith("orchestration floor (") and "6 evaluations" in line for line in lines)
    assert LAST_LINE.fullmatch(lines[-1]), lines[-1]
    assert not lines[-1].endswith("poll_p50_ms=-1")  # the poll mode was measured
