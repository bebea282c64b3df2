"""The folder archive: full copy plus manifest, idempotent, atomic, source untouched, links never followed out."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from budeval.errors import ArchiveUnavailableError, ValidationError
from budeval.storage.archive_folder import FolderArchive
from budeval.storage.factory import open_archive

from .archive_support import fingerprint, make_run_folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_upload_copies_every_file_with_a_manifest_of_sizes_and_sha256(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    archive = open_archive((tmp_path / "archive").as_uri())
    receipt = archive.upload_run(run, "ev-1/r0", {"eval_id": "ev-1", "engine": "opencompass 0.5.4"})
    dest = tmp_path / "archive" / "ev-1" / "r0"
    assert receipt.url == dest.as_uri() + "/"
    manifest = json.loads((dest / "manifest.json").read_text())
    listed = {f["path"]: f for f in manifest["files"]}
    sources = {p.relative_to(run).as_posix(): p for p in run.rglob("*") if p.is_file()}
    assert set(listed) == set(sources)
    for rel, src in sources.items():
        assert listed[rel]["sha256"] == _sha(src) == _sha(dest / rel)
        assert listed[rel]["size"] == src.stat().st_size
    assert manifest["provenance"] == {"eval_id": "ev-1", "engine": "opencompass 0.5.4"}
    assert receipt.files == len(sources) + 1 == receipt.uploaded and receipt.skipped == 0
    assert receipt.bytes == sum(p.stat().st_size for p in sources.values()) + (dest / "manifest.json").stat().st_size
    assert not [p for p in dest.rglob("*") if ".tmp-" in p.name]


def test_second_upload_skips_identical_files_and_recopies_changed_ones(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    archive = FolderArchive(tmp_path / "archive")
    archive.upload_run(run, "ev-1/r0", {})
    again = archive.upload_run(run, "ev-1/r0", {})
    assert (again.uploaded, again.skipped) == (0, again.files)
    summary = next(run.rglob("summary_*.csv"))
    summary.write_text("dataset,version,metric,mode,m\nqa,abc,accuracy,gen,75.00\n")
    third = archive.upload_run(run, "ev-1/r0", {})
    assert third.uploaded == 2  # the changed file and the manifest
    dest = tmp_path / "archive" / "ev-1" / "r0" / summary.relative_to(run)
    assert dest.read_text().endswith("75.00\n")


def test_symlinks_are_never_followed_out_of_the_folder(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    secret = tmp_path / "outside-secret.txt"
    secret.write_text("do not archive me")
    outside_dir = tmp_path / "outside-dir"
    outside_dir.mkdir()
    (outside_dir / "x.txt").write_text("nor me")
    os.symlink(secret, run / "leak.txt")
    os.symlink(outside_dir, run / "leak-dir")
    os.symlink(run / ".budeval" / "exit_code", run / "inside-link")
    receipt = FolderArchive(tmp_path / "archive").upload_run(run, "ev-1/r0", {})
    dest = tmp_path / "archive" / "ev-1" / "r0"
    manifest = json.loads((dest / "manifest.json").read_text())
    assert {s["path"] for s in manifest["skipped"]} == {"leak.txt", "leak-dir"}
    assert not (dest / "leak.txt").exists() and not (dest / "leak-dir").exists()
    assert (dest / "inside-link").read_text() == "0\n" and not (dest / "inside-link").is_symlink()
    assert "do not archive me" not in "".join(p.read_text() for p in dest.rglob("*") if p.is_file())
    assert receipt.skipped == 0


def test_a_fifo_and_a_file_named_like_the_manifest_are_skipped_with_their_reasons(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    os.mkfifo(run / "pipe")
    os.symlink(run / ".budeval" / "exit_code", run / "manifest.json")  # a link inside, but the name is the archive's
    FolderArchive(tmp_path / "archive").upload_run(run, "ev-1/r0", {})
    manifest = json.loads((tmp_path / "archive" / "ev-1" / "r0" / "manifest.json").read_text())
    reasons = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert reasons == {"pipe": "not a regular file", "manifest.json": "reserved name (the archive writes its own)"}
    assert manifest["prefix"] == "ev-1/r0"  # the manifest is the archive's own, not the run's file


def test_a_failed_copy_raises_and_leaves_the_source_untouched(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    before = fingerprint(run)
    blocked = tmp_path / "archive"
    blocked.mkdir()
    (blocked / "ev-1").write_text("a file where the archive needs a folder")
    with pytest.raises(ArchiveUnavailableError, match="source folder is unchanged"):
        FolderArchive(blocked).upload_run(run, "ev-1/r0", {})
    assert fingerprint(run) == before


def test_unsafe_prefixes_and_overlapping_folders_are_refused(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    archive = FolderArchive(tmp_path / "archive")
    for prefix in ("../escape", "ev/../../x", "", "/", "ev/./r0", "ev 1"):
        with pytest.raises(ValidationError):
            archive.upload_run(run, prefix, {})
    with pytest.raises(ValidationError, match="overlap"):
        FolderArchive(run / "nested").upload_run(run, "ev-1/r0", {})
    with pytest.raises(ValidationError, match="not a directory"):
        archive.upload_run(tmp_path / "missing", "ev-1/r0", {})
