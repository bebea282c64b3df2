"""`budeval extract` on a real chDB store and a folder archive, with real OpenCompass output (tests/fixtures).

It runs the workflow's own steps (budeval/workflow/steps.py); the test against an evaluation the workflow itself
recorded through the embedded service is tests/cli/test_extract_after_workflow.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from budeval.cli import extract_command
from budeval.engine.results import parse_run
from budeval.errors import ConflictError, UnsafeIdError
from budeval.storage.base import EvaluationRecord
from budeval.storage.factory import open_store
from tests.cli.support import FIXTURES, budeval_cmd, parser, run_cli
from tests.storage.fakes import MemoryRun, metric, status

#: The keys of one run in ``provenance.runs``, whoever wrote it (budeval.workflow.provenance.run_entry).
RUN_KEYS = {"run_id", "datasets", "phase", "predictions", "error"}


def _record(dsn: str, eval_id: str) -> EvaluationRecord:
    store = open_store(dsn)
    try:
        record = store.get_evaluation(eval_id)
    finally:
        store.close()
    assert record is not None
    return record


def test_extract_stores_records_and_archives_a_run_and_again_changes_nothing(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The extract flow with an in-memory parse result (the real parser in the tests below)."""
    run_dir = tmp_path / "work"
    (run_dir / "20260101_000000").mkdir(parents=True)
    (run_dir / "20260101_000000" / "note.txt").write_text("raw output\n")
    parsed = MemoryRun(
        "20260101_000000",
        [metric("m", "qa", 50.0), metric("m", "bad", None)],
        [status("m", "qa"), status("m", "bad", "failed")],
    )
    monkeypatch.setattr(extract_command, "_parse", lambda path: parsed)
    archive = tmp_path / "archive"
    argv = ("extract", str(run_dir), "--eval-id", "ev-x", "--store", dsn, "--archive", archive.as_uri(), "--json")
    doc = json.loads(run_cli(*argv))
    assert doc["status"] == "partial" and "r0/bad" in doc["reason"]
    assert doc["archive"]["url"] == (archive / "ev-x" / "r0").as_uri() + "/"
    assert (archive / "ev-x" / "r0" / "20260101_000000" / "note.txt").read_text() == "raw output\n"
    record = _record(dsn, "ev-x")
    assert record.status == "partial" and record.archive_url == doc["archive"]["url"]
    assert [set(r) for r in record.provenance["runs"]] == [RUN_KEYS]
    assert record.provenance["extracted_by"] == "budeval extract"
    assert record.provenance["extracts"]["r0"]["timestamp"] == "20260101_000000"
    assert record.provenance["dataset_versions"] == {"qa": "abc123", "bad": "abc123"}
    again = json.loads(run_cli(*argv))
    assert again["archive"]["uploaded"] == 0 and again["scores"] == doc["scores"]
    assert _record(dsn, "ev-x") == record  # the same row: extracting again is idempotent
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
    assert manifest["provenance"]["eval_id"] == "fx-1" and manifest["provenance"]["run"]["run_id"] == "r0"
    record = _record(dsn, "fx-1")
    assert record.engine_version == parse_run(source).facts.opencompass_version
    extracted = record.provenance["extracts"]["r0"]
    assert extracted["source"] == str(source.resolve()) and len(extracted["config_sha256"]) == 64


def test_a_second_run_joins_the_evaluation_and_the_status_covers_both(dsn: str) -> None:
    run_cli("extract", str(FIXTURES / "qa_chat"), "--eval-id", "two", "--store", dsn, "--no-archive")
    assert _record(dsn, "two").status == "completed"
    run_cli("extract", str(FIXTURES / "two_datasets_one_fails"), "--eval-id", "two", "--run-id", "r1",
            "--store", dsn, "--no-archive")
    record = _record(dsn, "two")
    assert record.status == "partial" and record.reason is not None and "r1/bad_eval_ds" in record.reason
    assert [r["run_id"] for r in record.provenance["runs"]] == ["r0", "r1"]
    assert set(record.provenance["extracts"]) == {"r0", "r1"}


def _bad(*argv: str) -> str:
    done = budeval_cmd(*argv)
    assert done.returncode == 1 and done.stdout == "", done
    lines = done.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("budeval: error: ") and "Traceback" not in done.stderr, done.stderr
    return lines[-1]


def test_a_bad_folder_fails_with_one_line_and_stores_nothing(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'ch'}"
    archive = tmp_path / "archive"
    common = ("--eval-id", "bad-1", "--store", dsn, "--archive", archive.as_uri())
    assert "not a directory" in _bad("extract", str(tmp_path / "nope"), *common)
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a run\n")
    assert "not a directory" in _bad("extract", str(a_file), *common)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no timestamp folder" in _bad("extract", str(empty), *common)
    assert "no usable summary" in _bad("extract", str(FIXTURES / "aborted"), *common)
    assert not archive.exists()
    assert "no evaluation 'bad-1'" in _bad("results", "bad-1", "--store", dsn)


def _workflow_row(dsn: str) -> None:
    """An evaluation as the workflow records it: run r0 (tiny_qa) and r1 (tiny_mcq) stored, r1's job failed."""
    store = open_store(dsn)
    try:
        store.migrate()
        store.store_run("wf-1", "r0", parse_run(FIXTURES / "qa_chat"))
        store.store_run("wf-1", "r1", parse_run(FIXTURES / "mcq"))
        store.record_evaluation(EvaluationRecord(
            eval_id="wf-1", status="partial", model_name="smollm2", created_at=datetime.now(UTC),
            finished_at=datetime.now(UTC), datasets=["tiny_qa", "tiny_mcq"],
            provenance={
                "params_hash": "p" * 64,
                "runs": [{"run_id": "r0", "datasets": ["tiny_qa"], "phase": "succeeded", "predictions": 5},
                         {"run_id": "r1", "datasets": ["tiny_mcq"], "phase": "failed", "predictions": 4,
                          "error": "OOMKilled"}],
                "timings": {"runs": {"r0": {"run_s": 60.0}}, "total_s": 70.0},
            },
        ))
    finally:
        store.close()


def test_extract_into_an_evaluation_the_workflow_recorded_needs_force(dsn: str) -> None:
    """Refused with one line unless --force; with it, run r0's rows are replaced (no duplicates), the other run and
    the row's identity are kept and the status is judged over both runs."""
    _workflow_row(dsn)
    before = _record(dsn, "wf-1")
    argv = ("extract", str(FIXTURES / "qa_chat"), "--eval-id", "wf-1", "--store", dsn, "--no-archive")
    args = parser().parse_args(list(argv))
    with pytest.raises(ConflictError, match=r"recorded by the workflow .*--force"):
        args.func(args)
    line = _bad(*argv)
    assert "'wf-1' was recorded by the workflow (status partial)" in line and "--force" in line
    assert _record(dsn, "wf-1") == before
    store = open_store(dsn)
    try:
        counts = {t: store.count(t, "wf-1") for t in ("scores", "dataset_status", "predictions")}
    finally:
        store.close()
    doc = json.loads(run_cli(*argv, "--force", "--json"))
    assert doc["status"] == "partial" and doc["reason"].startswith("r1/*: OOMKilled")
    record = _record(dsn, "wf-1")
    runs = {r["run_id"]: r for r in record.provenance["runs"]}
    assert set(runs) == {"r0", "r1"} and all(set(r) == RUN_KEYS for r in runs.values())
    assert runs["r1"]["phase"] == "failed" and runs["r0"]["datasets"] == ["tiny_qa"]
    assert record.provenance["params_hash"] == "p" * 64 and record.provenance["timings"]["runs"]["r0"]["run_s"] == 60
    assert "extracted_by" not in record.provenance and record.finished_at == before.finished_at
    store = open_store(dsn)
    try:
        assert {t: store.count(t, "wf-1") for t in counts} == counts  # replaced, never duplicated
    finally:
        store.close()


def test_an_evaluation_still_running_is_refused_with_that_said(dsn: str) -> None:
    store = open_store(dsn)
    try:
        store.migrate()
        store.record_evaluation(EvaluationRecord(eval_id="wf-run", status="running", created_at=datetime.now(UTC)))
    finally:
        store.close()
    line = _bad("extract", str(FIXTURES / "qa_chat"), "--eval-id", "wf-run", "--store", dsn, "--no-archive")
    assert "(status running, and may still be writing it)" in line
    assert _record(dsn, "wf-run").status == "running"


def test_an_archive_that_fails_exits_1_after_the_rows_and_the_row_are_stored(dsn: str, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x\n")
    line = _bad("extract", str(FIXTURES / "qa_chat"), "--eval-id", "ar-1", "--store", dsn,
                "--archive", not_a_folder.as_uri())
    assert "failed" in line
    record = _record(dsn, "ar-1")
    assert record.status == "completed" and record.archive_url is None
    assert json.loads(run_cli("results", "ar-1", "--store", dsn, "--json"))
