"""How evaluations end, against the real ``budeval serve`` (embedded sidecar in its own process, chDB, folder
archive, local backend running tests/service/fake_opencompass.sh), driven through the CLI and the HTTP API:

* a cancel racing a finalize already under way (held open at the archive step by ``BUDEVAL_FAULT_DELAY_AT``):
  exactly one final event, and the row and ``budeval cancel`` agree with it;
* a failed evaluation re-run under the same eval id with ``budeval submit --force``: a plain resubmit is a
  duplicate, the forced one runs as attempt 2, supersedes the earlier attempt and completes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.serve_process import FIXTURE, ServeProcess, serve_env
from tests.support import wait_until

FINAL = (".completed", ".failed", ".cancelled")


def _request(eval_id: str, path: str = "/models/m") -> dict[str, Any]:
    return {"eval_id": eval_id, "model": {"name": "m", "source": {"type": "huggingface", "path": path}},
            "datasets": ["tiny_qa"], "timeout_s": 600}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Path]]:
    assert FIXTURE.is_dir(), "committed OpenCompass fixture missing (scripts/make_fixtures.sh rebuilds it)"
    data_dir = tmp_path_factory.mktemp("outcomes")
    faults = data_dir / "faults"
    env = serve_env(data_dir, "process", BUDEVAL_FAULT_DELAY_AT="archive_evaluation:6",
                    BUDEVAL_FAULT_MARKER_DIR=str(faults))
    s = ServeProcess(data_dir, env).start()
    try:
        s.wait_ready(timeout=180)
        yield s, faults
    finally:
        s.stop()


def _final(served: ServeProcess, eval_id: str) -> list[dict[str, Any]]:
    return [e for e in served.events(eval_id) if e["type"].endswith(FINAL)]


def test_a_cancel_racing_a_finalize_under_way_leaves_one_final_event_that_the_row_agrees_with(
    served: tuple[ServeProcess, Path],
) -> None:
    s, faults = served
    assert s.cli("submit", "-", stdin=json.dumps(_request("race-1"))).returncode == 0
    marker = faults / "delaying-archive_evaluation"
    wait_until(marker.is_file, timeout=180, what="finalize under way (held at the archive step)")
    assert s.api("GET", "/evals/race-1").json()["workflow"]["status"] == "RUNNING"
    cancelled = s.cli("cancel", "race-1")
    # The cancel was delivered (202) but came too late: the evaluation finished, and `cancel` says so.
    assert cancelled.returncode == 1 and cancelled.stdout.strip() == "race-1: completed", cancelled
    wait_until(lambda: _final(s, "race-1"), timeout=60, what="the final event")
    assert [e["type"].rsplit(".", 1)[-1] for e in _final(s, "race-1")] == ["completed"]
    body = s.api("GET", "/evals/race-1").json()
    assert body["status"] == "completed" and body["evaluation"]["status"] == "completed"
    assert body["workflow"]["output"]["outcome"] == "completed"
    again = s.api("DELETE", "/evals/race-1")
    assert again.status_code == 409 and again.json()["current"] == "completed"


def test_a_failed_id_is_re_run_with_force_and_the_earlier_attempt_is_superseded(
    served: tuple[ServeProcess, Path],
) -> None:
    s, _ = served
    failing = s.cli("submit", "-", "--wait", "--timeout", "180",
                    stdin=json.dumps(_request("rerun-1", "/models/budeval-test-fail")))
    assert failing.returncode == 1 and "rerun-1: failed" in failing.stdout, failing.stdout + failing.stderr
    plain = s.cli("submit", "-", "--wait", "--timeout", "60", stdin=json.dumps(_request("rerun-1")))
    assert plain.returncode == 1 and "rerun-1: failed" in plain.stdout  # a duplicate: the earlier end answers
    forced = s.cli("submit", "-", "--force", "--wait", "--timeout", "180", stdin=json.dumps(_request("rerun-1")))
    assert forced.returncode == 0 and "rerun-1: completed" in forced.stdout, forced.stdout + forced.stderr
    ends = {e["id"]: e["type"].rsplit(".", 1)[-1] for e in _final(s, "rerun-1")}
    assert ends == {"rerun-1.failed": "failed", "rerun-1.completed.attempt2": "completed"}, ends
    body = s.api("GET", "/evals/rerun-1").json()
    assert body["status"] == "completed" and body["evaluation"]["provenance"]["attempt"] == 2
    scores = s.api("GET", "/evals/rerun-1/results").json()["scores"]
    counts = Counter((r["run_id"], r["dataset"], r["metric"]) for r in scores)
    assert scores and max(counts.values()) == 1
    assert (s.data_dir / "results" / ".superseded" / "rerun-1.attempt1" / "r0").is_dir()
    running = s.cli("submit", "-", "--force", stdin=json.dumps(_request("rerun-1")))
    assert running.returncode == 0  # published; a completed id is a duplicate, forced or not
    wait_until(lambda: [e for e in s.events("rerun-1") if e["type"].endswith(".duplicate")], timeout=60,
               what="the duplicate answer")
    assert s.api("GET", "/evals/rerun-1").json()["status"] == "completed"
