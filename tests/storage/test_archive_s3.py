"""The S3 archive against a real SeaweedFS S3 API: upload, manifest, idempotence, bucket creation, failures."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from pathlib import Path

import pytest
from minio import Minio

from budeval.errors import ArchiveUnavailableError
from budeval.storage.factory import open_archive

from .archive_support import fingerprint, make_run_folder
from .conftest import _s3_env

pytestmark = pytest.mark.s3


def _client(env: dict[str, str]) -> Minio:
    host = env["BUDEVAL_S3_ENDPOINT"].removeprefix("http://")
    return Minio(host, access_key=env["BUDEVAL_S3_ACCESS_KEY"], secret_key=env["BUDEVAL_S3_SECRET_KEY"], secure=False)


def _bucket() -> str:
    return f"budeval-test-{uuid.uuid4().hex[:10]}"


def _get(client: Minio, bucket: str, key: str) -> bytes:
    response = client.get_object(bucket, key)
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()


def test_upload_creates_the_bucket_and_writes_files_and_a_correct_manifest(
    tmp_path: Path, s3_env: dict[str, str]
) -> None:
    run = make_run_folder(tmp_path)
    big = run / "20261123_081443" / "predictions" / "m" / "big_0.json"
    big.write_bytes(os.urandom(6 * 1024 * 1024 + 123))  # above the SDK's multipart threshold
    bucket = _bucket()
    client = _client(s3_env)
    assert not client.bucket_exists(bucket)
    archive = open_archive(f"s3://{bucket}/archive?endpoint={s3_env['BUDEVAL_S3_ENDPOINT']}")
    receipt = archive.upload_run(run, "ev-1/r0", {"eval_id": "ev-1"})
    assert client.bucket_exists(bucket)
    assert receipt.url == f"s3://{bucket}/archive/ev-1/r0/"
    manifest = json.loads(_get(client, bucket, "archive/ev-1/r0/manifest.json"))
    local = {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert {f["path"] for f in manifest["files"]} == set(local)
    for entry in manifest["files"]:
        body = _get(client, bucket, f"archive/ev-1/r0/{entry['path']}")
        assert body == local[entry["path"]]
        assert entry["sha256"] == hashlib.sha256(body).hexdigest() and entry["size"] == len(body)
    assert manifest["provenance"] == {"eval_id": "ev-1"}
    assert (receipt.files, receipt.uploaded, receipt.skipped) == (len(local) + 1, len(local) + 1, 0)


def test_second_upload_skips_identical_objects_and_uploads_changed_ones(tmp_path: Path, s3_env: dict[str, str]) -> None:
    run = make_run_folder(tmp_path)
    (run / "big.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    url = f"s3://{_bucket()}?endpoint={s3_env['BUDEVAL_S3_ENDPOINT']}"
    first = open_archive(url).upload_run(run, "ev-2/r0", {})
    second = open_archive(url).upload_run(run, "ev-2/r0", {})
    assert first.uploaded == first.files and first.skipped == 0
    assert (second.uploaded, second.skipped) == (0, second.files)
    (run / ".budeval" / "exit_code").write_text("1\n")
    third = open_archive(url).upload_run(run, "ev-2/r0", {})
    assert third.uploaded == 2  # the changed file and the manifest


def test_an_unreachable_endpoint_raises_and_leaves_the_source_untouched(tmp_path: Path, s3_env: dict[str, str]) -> None:
    run = make_run_folder(tmp_path)
    before = fingerprint(run)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    archive = open_archive(f"s3://{_bucket()}?endpoint=http://127.0.0.1:{port}")
    with pytest.raises(ArchiveUnavailableError, match=rf"127\.0\.0\.1:{port}.*source folder is unchanged"):
        archive.upload_run(run, "ev-3/r0", {})
    assert fingerprint(run) == before


def test_wrong_credentials_raise_archive_unavailable(
    tmp_path: Path, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run_folder(tmp_path)
    monkeypatch.setenv("BUDEVAL_S3_SECRET_KEY", "not-the-secret")
    archive = open_archive(f"s3://{_bucket()}?endpoint={s3_env['BUDEVAL_S3_ENDPOINT']}")
    with pytest.raises(ArchiveUnavailableError) as caught:
        archive.upload_run(run, "ev-4/r0", {})
    assert "not-the-secret" not in str(caught.value)


def test_starting_the_running_server_again_reuses_it(s3_server: dict[str, str], s3_state: Path) -> None:
    pid_before = (s3_state / "weed.pid").read_text()
    again = _s3_env(s3_state, "start")
    assert again == s3_server
    assert (s3_state / "weed.pid").read_text() == pid_before
    assert _s3_env(s3_state, "status") == {}
