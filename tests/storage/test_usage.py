"""An endpoint run's usage: the lines its model wrote, summed by the reader, stored per run (migration 9), replaced
with the run's other rows, totalled for ``GET /evals/{id}`` and ``budeval results``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from budeval.engine.results import parse_run
from budeval.engine.results.usage import USAGE_DIR, read_usage
from budeval.schemas.results import RunUsage
from budeval.service.status import usage_view
from budeval.storage.clickhouse import ClickHouseStore

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "opencompass" / "qa_chat"


def _run_with_usage(tmp_path: Path, *files: list[object]) -> Path:
    work = tmp_path / "run"
    shutil.copytree(FIXTURE, work)
    (work / USAGE_DIR).mkdir(parents=True)
    for i, lines in enumerate(files):
        text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
        (work / USAGE_DIR / f"usage-{100 + i}.jsonl").write_text(text)
    return work


def test_reader_sums_every_process_file_and_counts_failures(tmp_path: Path) -> None:
    work = _run_with_usage(
        tmp_path,
        [{"ok": True, "prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35},
         {"ok": False, "error": "APIConnectionError"}],
        [{"ok": True, "prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
         '{"ok": true, "prompt_tok',  # a process killed mid-write: the half line is skipped
         {"ok": True, "prompt_tokens": True}],  # not a count: ignored, the request still counts
    )
    assert read_usage(work) == RunUsage(requests=4, failed_requests=1, prompt_tokens=40, completion_tokens=7,
                                        total_tokens=47)


def test_no_usage_file_is_none_and_an_endpoint_without_usage_reports_none_tokens(tmp_path: Path) -> None:
    assert read_usage(FIXTURE) is None
    work = _run_with_usage(tmp_path, [{"ok": True}, {"ok": True}])
    assert read_usage(work) == RunUsage(requests=2, failed_requests=0)


def test_stored_per_run_replaced_with_the_run_and_totalled(store: ClickHouseStore, tmp_path: Path) -> None:
    work = _run_with_usage(tmp_path, [{"ok": True, "prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}])
    store.store_run("ev", "r0", parse_run(work))
    store.store_run("ev", "r1", parse_run(work))
    assert store.usage("ev") == {
        "r0": RunUsage(requests=1, prompt_tokens=30, completion_tokens=5, total_tokens=35),
        "r1": RunUsage(requests=1, prompt_tokens=30, completion_tokens=5, total_tokens=35),
    }
    (work / USAGE_DIR / "usage-100.jsonl").write_text(json.dumps({"ok": False}) + "\n")
    store.store_run("ev", "r1", parse_run(work))  # stored again: the run's earlier usage row is replaced
    runs = store.usage("ev")
    assert runs["r1"] == RunUsage(requests=1, failed_requests=1)
    view = usage_view(runs)
    assert view is not None
    assert view["total"] == {"requests": 2, "failed_requests": 1, "prompt_tokens": 30, "completion_tokens": 5,
                             "total_tokens": 35}
    assert RunUsage.model_validate(view["total"]).line() == (
        "usage: 2 requests (1 failed), tokens: prompt 30, completion 5, total 35"
    )
    store.store_run("hf", "r0", parse_run(FIXTURE))
    assert store.usage("hf") == {} and usage_view({}) is None
    store.clear_results("ev")
    assert store.usage("ev") == {}


def test_a_server_reporting_absurd_token_counts_does_not_break_storing_the_run(
    store: ClickHouseStore, tmp_path: Path
) -> None:
    """A garbage server's usage (the OpenAI client takes any JSON integer) went into UInt64 columns unchecked: a count
    past 2**64 (or a sum of counts) failed the run's whole store step, losing its scores. A count that cannot be a
    token count is ignored like a non-integer; the request still counts."""
    huge = 2**70
    work = _run_with_usage(tmp_path, [{"ok": True, "prompt_tokens": huge, "completion_tokens": 5, "total_tokens": 7},
                                      {"ok": True, "prompt_tokens": 3, "completion_tokens": 2**63, "total_tokens": 1}])
    usage = read_usage(work)
    assert usage == RunUsage(requests=2, prompt_tokens=3, completion_tokens=5, total_tokens=8)
    store.store_run("big", "r0", parse_run(work))
    assert store.usage("big")["r0"] == usage
    assert store.results("big")  # the scores are stored too
