"""The service CLI's own failure paths: one-line errors, non-zero exits, no service needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BUDEVAL_DATA_DIR": str(tmp_path / "data"),
           "BUDEVAL_API_URL": "http://127.0.0.1:9"}
    return subprocess.run([sys.executable, "-m", "budeval.cli.main", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


def test_submit_names_file_and_line_of_broken_json(tmp_path: Path) -> None:
    bad = tmp_path / "req.json"
    bad.write_text('{\n  "eval_id": "a",\n  oops\n}\n')
    done = run(tmp_path, "submit", str(bad))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f"budeval: error: {bad}:3: not valid JSON")
    not_object = run(tmp_path, "submit", "-", stdin="[1, 2]")
    assert not_object.returncode == 1 and "<stdin>: a request is a JSON object, got list" in not_object.stderr


def test_submit_without_a_running_service_gives_up_with_a_reason(tmp_path: Path) -> None:
    done = run(tmp_path, "submit", "-", "--timeout", "1", stdin='{"eval_id": "a"}')
    assert done.returncode == 1
    assert "gave up waiting: no running service found" in done.stderr


def test_status_and_cancel_report_an_unreachable_service(tmp_path: Path) -> None:
    for args in (("status", "e1"), ("cancel", "e1")):
        done = run(tmp_path, *args)
        assert done.returncode == 1
        assert done.stderr.startswith("budeval: error: the service at http://127.0.0.1:9 does not answer")
