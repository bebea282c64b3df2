"""Retention of the results volume (budeval/storage/retention.py) against real archives: the folder archive and a
real SeaweedFS S3 server (scripts/s3_server.sh). A folder goes only after its archive is read back and verified and
its grace period passed; it stays when the archive failed, is pending, is damaged, is unreachable, or misses a file."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from minio import Minio

from budeval.config import Settings
from budeval.events.publisher import MemoryPublisher
from budeval.service.housekeeping import Housekeeping
from budeval.storage import retention
from budeval.storage.archive_folder import FolderArchive
from budeval.storage.base import Archive, EvaluationRecord
from budeval.storage.clickhouse import ClickHouseStore
from budeval.storage.factory import open_archive, open_store
from budeval.workflow.steps import archive_folder
from tests.cli.support import run_cli

from .archive_support import make_run_folder

HOUR = 3600.0


def _results(tmp_path: Path, eval_id: str) -> Path:
    """``{results_root}/{eval_id}/run/...`` as a run leaves it (OpenCompass output plus the local markers)."""
    root = tmp_path / "results"
    folder = root / eval_id
    folder.mkdir(parents=True)
    make_run_folder(folder)
    return root


def _archived(store: ClickHouseStore, archive: Archive, root: Path, eval_id: str, finished_ago_s: float,
              **fields: Any) -> EvaluationRecord:
    """Archive the folder as the workflow's finalize does and record the evaluation ``completed`` with its URL."""
    done = archive_folder(archive, root / eval_id, eval_id, {"params_hash": "p"})
    assert done.url and not done.error, done
    finished = datetime.now(UTC) - timedelta(seconds=finished_ago_s)
    record = EvaluationRecord(eval_id=eval_id, status="completed", archive_url=done.url, created_at=finished,
                              finished_at=finished, **fields)
    store.record_evaluation(record)
    return record


def _verdict(verdicts: list[retention.FolderVerdict], eval_id: str) -> retention.FolderVerdict:
    [found] = [v for v in verdicts if v.eval_id == eval_id]
    return found


def _expect_removal(store: ClickHouseStore, archive: Archive, root: Path, eval_id: str) -> None:
    """Dry run lists it and leaves it; a grace period not yet over keeps it; then a real pass removes it."""
    folder = root / eval_id
    planned = retention.collect(root, store, archive, grace_s=0, dry_run=True)
    verdict = _verdict(planned, eval_id)
    assert verdict.action == "remove" and not verdict.removed, verdict
    assert verdict.bytes > 2000 and "archive verified" in verdict.reason
    assert folder.is_dir()  # a dry run touches nothing
    waiting = _verdict(retention.collect(root, store, archive, grace_s=HOUR, dry_run=False), eval_id)
    assert waiting.action == "keep" and "grace period" in waiting.reason and folder.is_dir()
    done = _verdict(retention.collect(root, store, archive, grace_s=0, dry_run=False), eval_id)
    assert done.removed and not folder.exists()
    assert sorted(p.name for p in root.iterdir()) == []  # no hidden leftovers of the rename


def test_a_folder_archived_and_verified_in_the_folder_archive_is_removed_after_its_grace(
    tmp_path: Path, store: ClickHouseStore
) -> None:
    root = _results(tmp_path, "ev-folder")
    archive = FolderArchive(tmp_path / "archive")
    _archived(store, archive, root, "ev-folder", finished_ago_s=10)
    _expect_removal(store, archive, root, "ev-folder")
    assert (tmp_path / "archive" / "ev-folder" / "manifest.json").is_file()  # the archive itself is untouched


def test_a_folder_archived_and_verified_in_real_s3_is_removed_after_its_grace(
    tmp_path: Path, store: ClickHouseStore, s3_env: dict[str, str]
) -> None:
    root = _results(tmp_path, "ev-s3")
    settings = Settings.from_env({"BUDEVAL_DATA_DIR": str(tmp_path / "data"), **s3_env})
    archive = open_archive(f"s3://retention?endpoint={s3_env['BUDEVAL_S3_ENDPOINT']}", settings)
    record = _archived(store, archive, root, "ev-s3", finished_ago_s=10)
    assert record.archive_url == "s3://retention/ev-s3/"
    _expect_removal(store, archive, root, "ev-s3")


def test_a_damaged_s3_archive_or_a_dead_endpoint_keeps_the_folder(
    tmp_path: Path, store: ClickHouseStore, s3_env: dict[str, str]
) -> None:
    root = _results(tmp_path, "ev-bad")
    settings = Settings.from_env({"BUDEVAL_DATA_DIR": str(tmp_path / "data"), **s3_env})
    archive = open_archive(f"s3://retention-bad?endpoint={s3_env['BUDEVAL_S3_ENDPOINT']}", settings)
    _archived(store, archive, root, "ev-bad", finished_ago_s=10)
    # An object replaced behind budeval's back (same key, other bytes): metadata alone would still say "fine".
    endpoint = s3_env["BUDEVAL_S3_ENDPOINT"].split("://", 1)[1]
    client = Minio(endpoint, s3_env["BUDEVAL_S3_ACCESS_KEY"], s3_env["BUDEVAL_S3_SECRET_KEY"], secure=False)
    key = "ev-bad/run/20261123_081443/empty.txt"
    sha = client.stat_object("retention-bad", key).metadata["x-amz-meta-sha256"]
    assert _verdict(retention.collect(root, store, archive, 0, dry_run=True), "ev-bad").action == "remove"
    client.put_object("retention-bad", key, io.BytesIO(b"x"), 1, metadata={"sha256": sha})
    kept = _verdict(retention.collect(root, store, archive, 0, dry_run=False), "ev-bad")
    assert kept.action == "keep" and "does not match its manifest" in kept.reason and (root / "ev-bad").is_dir()
    client.remove_object("retention-bad", key)
    kept = _verdict(retention.collect(root, store, archive, 0, dry_run=False), "ev-bad")
    assert "missing from the archive" in kept.reason and (root / "ev-bad").is_dir()
    dead = open_archive("s3://retention-bad?endpoint=http://127.0.0.1:9", Settings.from_env({
        "BUDEVAL_DATA_DIR": str(tmp_path / "data"), "BUDEVAL_ARCHIVE_RETRIES": "0",
        "BUDEVAL_ARCHIVE_CONNECT_TIMEOUT_S": "1", **s3_env}))
    kept = _verdict(retention.collect(root, store, dead, 0, dry_run=False), "ev-bad")
    assert kept.action == "keep" and "archive not verified" in kept.reason and (root / "ev-bad").is_dir()


def test_a_failed_or_pending_archive_keeps_the_folder(tmp_path: Path, store: ClickHouseStore) -> None:
    root = _results(tmp_path, "ev-failed")
    make_run_folder(root / "ev-pending")
    # The archive refused the upload (a terminal error: its folder lies inside the source), recorded as the
    # workflow's finalize records it.
    refused = archive_folder(FolderArchive(root / "ev-failed" / "x"), root / "ev-failed", "ev-failed", {})
    assert refused.url is None and refused.error, refused
    old = datetime.now(UTC) - timedelta(days=30)
    store.record_evaluation(EvaluationRecord(eval_id="ev-failed", status="completed", finished_at=old,
                                             reason=f"archive failed: {refused.error}",
                                             provenance={"archive_error": refused.error}))
    store.record_evaluation(EvaluationRecord(eval_id="ev-pending", status="completed", finished_at=old,
                                             archive_pending=True,
                                             provenance={"archive_pending_reason": "S3 down"}))
    archive = FolderArchive(tmp_path / "archive")
    verdicts = retention.collect(root, store, archive, 0, dry_run=False)
    failed, pending = _verdict(verdicts, "ev-failed"), _verdict(verdicts, "ev-pending")
    assert failed.action == "keep" and "not archived" in failed.reason and "only copy" in failed.reason
    assert pending.action == "keep" and "archive pending (S3 down)" in pending.reason
    assert (root / "ev-failed" / "run").is_dir() and (root / "ev-pending" / "run").is_dir()


def test_a_file_written_after_the_archive_a_running_rerun_or_no_row_keeps_the_folder(
    tmp_path: Path, store: ClickHouseStore
) -> None:
    root = _results(tmp_path, "ev-late")
    archive = FolderArchive(tmp_path / "archive")
    _archived(store, archive, root, "ev-late", finished_ago_s=10)
    (root / "ev-late" / "run" / "late.log").write_text("written after the archive\n")
    late = _verdict(retention.collect(root, store, archive, 0, dry_run=False), "ev-late")
    assert late.action == "keep" and "late.log is not in the archive" in late.reason
    (root / "ev-late" / "run" / "late.log").unlink()
    store.record_evaluation(EvaluationRecord(eval_id="ev-late", status="running",
                                             archive_url=late.archive_url))  # a forced re-run began
    running = _verdict(retention.collect(root, store, archive, 0, dry_run=False), "ev-late")
    assert running.action == "keep" and "running" in running.reason
    make_run_folder(root / "stranger")
    (root / "_cache" / "datasets").mkdir(parents=True)  # budeval's own folders are never looked at
    verdicts = retention.collect(root, store, archive, 0, dry_run=False)
    assert _verdict(verdicts, "stranger").reason.startswith("no evaluation row")
    assert {v.eval_id for v in verdicts} == {"ev-late", "stranger"}
    assert (root / "_cache" / "datasets").is_dir() and (root / "stranger").is_dir() and (root / "ev-late").is_dir()


def test_the_service_housekeeping_loop_removes_verified_folders(tmp_path: Path, store: ClickHouseStore) -> None:
    settings = Settings.from_env({"BUDEVAL_DATA_DIR": str(tmp_path / "data"), "BUDEVAL_RESULTS_GRACE_S": "0",
                                  "BUDEVAL_RESULTS_GC_INTERVAL_S": "3600"})
    root = settings.resolved_results_root()
    root.mkdir(parents=True)
    make_run_folder(root / "ev-loop")
    archive = FolderArchive(tmp_path / "archive")
    _archived(store, archive, root, "ev-loop", finished_ago_s=1)
    keeper = Housekeeping(settings, store, archive, workflows=None, publisher=MemoryPublisher())
    assert keeper.run_once()["removed"] == 1 and not (root / "ev-loop").exists()
    make_run_folder(root / "ev-loop2")
    _archived(store, archive, root, "ev-loop2", finished_ago_s=1)
    assert keeper.run_once()["removed"] == 0  # the next pass is due an interval later
    assert (root / "ev-loop2").is_dir()


def test_gc_of_a_missing_results_root_is_an_empty_plan(tmp_path: Path, store: ClickHouseStore) -> None:
    assert retention.collect(tmp_path / "nothing", store, FolderArchive(tmp_path / "a"), 0, dry_run=False) == []


def test_budeval_gc_dry_run_shows_what_would_go_and_gc_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("BUDEVAL_DATA_DIR", str(data))
    monkeypatch.setenv("BUDEVAL_RESULTS_GRACE_S", "0")
    monkeypatch.setenv("BUDEVAL_PREDICTIONS_TTL_S", "86400")
    settings = Settings.from_env()
    root = settings.resolved_results_root()
    root.mkdir(parents=True)
    make_run_folder(root / "ev-cli")
    make_run_folder(root / "ev-pending")
    dsn = f"chdb://{tmp_path / 'ch'}"
    store = open_store(dsn)
    try:
        store.migrate()
        _archived(store, open_archive(settings.resolved_archive_url(), settings), root, "ev-cli", 1)
        store.record_evaluation(EvaluationRecord(eval_id="ev-pending", status="completed", archive_pending=True))
    finally:
        store.close()
    shown = json.loads(run_cli("gc", "--dry-run", "--json", "--store", dsn))
    assert shown["dry_run"] and shown["removed"] == 1 and shown["freed_bytes"] > 2000
    assert {f["eval_id"]: f["action"] for f in shown["folders"]} == {"ev-cli": "remove", "ev-pending": "keep"}
    assert shown["predictions_ttl_s"] == 86400 and shown["predictions_expiring"] == 0
    assert (root / "ev-cli").is_dir()
    text = run_cli("gc", "--dry-run", "--store", dsn)
    assert "would remove  ev-cli" in text and "archive pending" in text and "would remove 1 of 2" in text
    assert "removed 1 of 2" in run_cli("gc", "--store", dsn)
    assert not (root / "ev-cli").exists() and (root / "ev-pending").is_dir()
