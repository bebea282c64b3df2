"""The data CLI (extract, results, leaderboard, compare, migrate) on a real chDB store and a folder archive."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from budeval.cli import data_commands
from budeval.errors import NotFoundError, UnsafeIdError
from budeval.storage.factory import open_store
from tests.storage.fakes import Example, MemoryRun, metric, simple_run, status

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "opencompass"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="budeval")
    data_commands.register(parser.add_subparsers(dest="command", required=True))
    return parser


def run_cli(*argv: str) -> str:
    args = _parser().parse_args(list(argv))
    out = io.StringIO()
    assert args.func(args, out) == 0
    return out.getvalue()


@pytest.fixture
def dsn(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'ch'}"


def _fill(dsn: str, runs: dict[str, MemoryRun]) -> None:
    store = open_store(dsn)
    try:
        store.migrate()
        for eval_id, run in runs.items():
            store.store_run(eval_id, "r0", run)
    finally:
        store.close()


def test_migrate_applies_then_reports_up_to_date(dsn: str) -> None:
    first = json.loads(run_cli("migrate", "--store", dsn, "--json"))
    assert first["applied"] and first["version"] >= 2
    assert json.loads(run_cli("migrate", "--store", dsn, "--json"))["applied"] == []
    assert "up to date" in run_cli("migrate", "--store", dsn)


def test_results_json_has_the_contract_fields_and_null_scores(dsn: str) -> None:
    _fill(dsn, {"ev-1": simple_run("20260101_000000", {("m", "qa"): 42.5, ("m", "bad"): None})})
    rows = json.loads(run_cli("results", "ev-1", "--store", dsn, "--json"))
    by_dataset = {r["dataset"]: r for r in rows}
    assert set(by_dataset) == {"qa", "bad"}
    for row in rows:
        assert {"model", "dataset", "metric", "score", "status"} <= set(row)
    assert by_dataset["qa"]["score"] == 42.5 and by_dataset["qa"]["status"] == "ok"
    assert by_dataset["bad"]["score"] is None and by_dataset["bad"]["status"] == "missing"
    table = run_cli("results", "ev-1", "--store", dsn)
    assert "42.50" in table and "missing" in table


def test_results_with_examples_shows_each_verdict_beside_the_scores(dsn: str) -> None:
    run = simple_run("20260101_000000", {("m", "tiny_qa"): 50.0, ("m", "tiny_mcq"): 100.0})
    run.examples = [
        Example("m", "tiny_qa", 0, True, "The capital of France is Paris.", "Paris", "HUMAN: What is the capital?\n"),
        Example("m", "tiny_qa", 1, False, "A spider has 18 legs.", "8", "HUMAN: How many legs?\n"),
        Example("m", "tiny_qa", 2, None, "x" * 200, "8", "HUMAN: Unjudged?\n"),
        Example("m", "tiny_mcq", 0, True, "B", "B", "HUMAN: Question: What is 2+2?\nA. 3\nB. 4"),
    ]
    _fill(dsn, {"ev-1": run})
    text = run_cli("results", "ev-1", "--store", dsn, "--examples")
    scores, _, examples = text.partition("Per example (first 10 of each dataset):\n")
    assert "50.00" in scores and "100.00" in scores
    lines = examples.splitlines()
    assert lines[0].split() == ["dataset", "#", "question", "answer", "gold", "verdict"]
    assert lines[1].split()[:2] == ["tiny_mcq", "0"] and "Question: What is 2+2? A. 3 B. 4" in lines[1]
    assert "What is the capital?" in lines[2] and "HUMAN" not in lines[2]
    assert "The capital of France is Paris." in lines[2] and lines[2].split()[-2:] == ["Paris", "right"]
    assert lines[3].split()[-2:] == ["8", "wrong"]
    assert lines[4].split()[-1] == "-" and "x" * 45 + "..." in lines[4] and "x" * 49 not in lines[4]
    # The limit applies per dataset; JSON carries the same rows.
    assert len(run_cli("results", "ev-1", "--store", dsn, "--examples", "1").split("Per example")[1].splitlines()) == 4
    doc = json.loads(run_cli("results", "ev-1", "--store", dsn, "--examples", "2", "--json"))
    assert [r["dataset"] for r in doc["scores"]] == ["tiny_mcq", "tiny_qa"]
    assert [(e["dataset"], e["example_index"], e["correct"]) for e in doc["examples"]] == [
        ("tiny_mcq", 0, True),
        ("tiny_qa", 0, True),
        ("tiny_qa", 1, False),
    ]


def test_results_of_an_unknown_evaluation_is_not_found(dsn: str) -> None:
    args = _parser().parse_args(["results", "nope", "--store", dsn])
    with pytest.raises(NotFoundError, match="nope"):
        args.func(args, io.StringIO())


def test_leaderboard_and_compare_json(dsn: str) -> None:
    _fill(
        dsn,
        {
            "ck-1": simple_run("20260101_000000", {("ckpt-1", "qa"): 60.0}, {("ckpt-1", "qa"): [True, True, False]}),
            "ck-2": simple_run("20260102_000000", {("ckpt-2", "qa"): 40.0}, {("ckpt-2", "qa"): [True, False, False]}),
        },
    )
    board = json.loads(run_cli("leaderboard", "--dataset", "qa", "--store", dsn, "--json", "--mode", "best"))
    assert [(r["rank"], r["model"], r["score"]) for r in board] == [(1, "ckpt-1", 60.0), (2, "ckpt-2", 40.0)]
    page = json.loads(
        run_cli("leaderboard", "--dataset", "qa", "--store", dsn, "--json", "--limit", "1", "--offset", "1")
    )
    assert [r["model"] for r in page] == ["ckpt-2"]
    doc = json.loads(run_cli("compare", "ck-1", "ck-2", "--examples", "--store", dsn, "--json"))
    assert doc["scores"][0]["delta"] == pytest.approx(-20.0)
    assert [(f["example_index"], f["direction"]) for f in doc["flips"]] == [(1, "correct_to_wrong")]
    assert doc["flip_summary"][0]["correct_to_wrong"] == 1
    text = run_cli("compare", "ck-1", "ck-2", "--examples", "--store", dsn)
    assert "-20.00" in text and "correct_to_wrong" in text
    args = _parser().parse_args(["compare", "ck-1", "ck-9", "--store", dsn])
    with pytest.raises(NotFoundError, match="ck-9"):
        args.func(args, io.StringIO())


def test_extract_stores_records_and_archives_a_run(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The extract flow with an in-memory parse result (the real parser is exercised in the fixture test below)."""
    run_dir = tmp_path / "work"
    (run_dir / "20260101_000000").mkdir(parents=True)
    (run_dir / "20260101_000000" / "note.txt").write_text("raw output\n")
    parsed = MemoryRun(
        "20260101_000000",
        [metric("m", "qa", 50.0), metric("m", "bad", None)],
        [status("m", "qa"), status("m", "bad", "failed")],
    )
    monkeypatch.setattr(data_commands, "_parse", lambda path: parsed)
    archive = tmp_path / "archive"
    doc = json.loads(
        run_cli("extract", str(run_dir), "--eval-id", "ev-x", "--store", dsn, "--archive", archive.as_uri(), "--json")
    )
    assert doc["status"] == "partial"
    assert doc["archive"]["url"] == (archive / "ev-x" / "r0").as_uri() + "/"
    assert (archive / "ev-x" / "r0" / "20260101_000000" / "note.txt").read_text() == "raw output\n"
    store = open_store(dsn)
    try:
        record = store.get_evaluation("ev-x")
    finally:
        store.close()
    assert record is not None and record.status == "partial" and record.archive_url == doc["archive"]["url"]
    assert {r["run_id"]: r for r in record.provenance["runs"]}["r0"]["timestamp"] == "20260101_000000"
    assert record.provenance["dataset_versions"] == {"qa": "abc123", "bad": "abc123"}
    again = json.loads(
        run_cli("extract", str(run_dir), "--eval-id", "ev-x", "--store", dsn, "--archive", archive.as_uri(), "--json")
    )
    assert again["archive"]["uploaded"] == 0 and again["scores"] == doc["scores"]
    with pytest.raises(UnsafeIdError):
        run_cli("extract", str(run_dir), "--eval-id", "../x", "--store", dsn, "--no-archive")


def test_extract_a_real_opencompass_fixture_end_to_end(dsn: str, tmp_path: Path) -> None:
    source = FIXTURES / "two_models_one_fails"
    archive = tmp_path / "archive"
    doc = json.loads(
        run_cli("extract", str(source), "--eval-id", "fx-1", "--store", dsn, "--archive", archive.as_uri(), "--json")
    )
    rows = json.loads(run_cli("results", "fx-1", "--store", dsn, "--json"))
    assert rows == doc["scores"]
    models = {r["model"]: r for r in rows}
    assert models["smollm2-135m-instruct"]["score"] is not None
    assert models["missing-model"]["score"] is None and models["missing-model"]["status"] != "ok"
    assert doc["status"] == "partial"
    manifest = json.loads((archive / "fx-1" / "r0" / "manifest.json").read_text())
    assert len(manifest["files"]) == sum(1 for p in source.rglob("*") if p.is_file())


def test_extract_of_an_aborted_run_fails_with_one_line_and_stores_nothing(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'ch'}"
    archive = tmp_path / "archive"
    done = _budeval(
        "extract", str(FIXTURES / "aborted"), "--eval-id", "ab-1", "--store", dsn, "--archive", archive.as_uri()
    )
    assert done.returncode == 1 and done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("budeval: error: ") and "no usable summary" in last
    assert not archive.exists()
    assert _budeval("results", "ab-1", "--store", dsn).returncode == 1


def _budeval(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "budeval.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


def test_the_budeval_command_fails_with_one_line_and_uses_env_defaults(tmp_path: Path) -> None:
    env: dict[str, Any] = {"BUDEVAL_STORE_DSN": f"chdb://{tmp_path / 'ch'}", "BUDEVAL_DATA_DIR": str(tmp_path)}
    missing = _budeval("results", "nope", "--json", env=env)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().splitlines()[-1] == "budeval: error: no evaluation 'nope' in the store"
    unreachable = _budeval("results", "x", "--store", "http://u:hunter2@127.0.0.1:1/db")
    assert unreachable.returncode == 1 and "hunter2" not in unreachable.stderr
    assert unreachable.stderr.strip().splitlines()[-1].startswith("budeval: error: cannot open the ClickHouse store")
    ok = _budeval("migrate", "--json", env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["applied"] == []


def test_extract_into_an_evaluation_the_workflow_recorded(dsn: str, tmp_path: Path) -> None:
    """The workflow records ``provenance.runs`` as a list of runs with their run_id; extract adds or replaces its
    run in the same shape (it used to expect a dict and failed with an uncaught ValueError)."""
    from datetime import UTC, datetime

    from budeval.storage.base import EvaluationRecord

    store = open_store(dsn)
    try:
        store.migrate()
        store.record_evaluation(EvaluationRecord(
            eval_id="wf-1", status="completed", model_name="m", created_at=datetime.now(UTC),
            provenance={"runs": [{"run_id": "r0", "datasets": ["tiny_qa"], "phase": "succeeded", "predictions": 5},
                                 {"run_id": "r1", "datasets": ["tiny_mcq"], "phase": "succeeded", "predictions": 4}]},
        ))
    finally:
        store.close()
    run_cli("extract", str(FIXTURES / "qa_chat"), "--eval-id", "wf-1", "--run-id", "r0", "--store", dsn, "--no-archive")
    store = open_store(dsn)
    try:
        record = store.get_evaluation("wf-1")
        assert record is not None
        runs = {r["run_id"]: r for r in record.provenance["runs"]}
        assert set(runs) == {"r0", "r1"} and runs["r0"]["timestamp"] and runs["r1"]["phase"] == "succeeded"
    finally:
        store.close()
