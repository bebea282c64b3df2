"""DSN and URL handling: typed errors for bad or unreachable stores, passwords never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from budeval.errors import StoreUnavailableError, ValidationError
from budeval.storage.archive_folder import FolderArchive
from budeval.storage.archive_s3 import S3Archive
from budeval.storage.factory import open_archive, open_store, redact_dsn
from tests.support import free_port


def test_an_unreachable_server_is_store_unavailable_and_the_password_stays_hidden() -> None:
    dsn = f"http://analyst:s3cr3t-pw@127.0.0.1:{free_port()}/budeval"
    with pytest.raises(StoreUnavailableError) as caught:
        open_store(dsn)
    assert "s3cr3t-pw" not in str(caught.value)
    assert "analyst:***@127.0.0.1" in str(caught.value)


@pytest.mark.parametrize(
    "dsn",
    ["chdb://relative/path", "chdb:relative", "mysql://u:p@h/db", "http:///nohost", "s3:bucket", ""],
)
def test_bad_store_dsns_are_validation_errors(dsn: str) -> None:
    with pytest.raises(ValidationError):
        open_store(dsn)


def test_redact_dsn_hides_only_the_password() -> None:
    assert redact_dsn("https://u:p%40ss@ch.example:8443/db") == "https://u:***@ch.example:8443/db"
    assert redact_dsn("chdb:///var/lib/budeval") == "chdb:///var/lib/budeval"
    assert redact_dsn("http://u@h:8123/db") == "http://u@h:8123/db"


def test_archive_urls_pick_the_implementation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUDEVAL_S3_ACCESS_KEY", raising=False)
    monkeypatch.delenv("BUDEVAL_S3_SECRET_KEY", raising=False)
    folder = open_archive(tmp_path.as_uri())
    assert isinstance(folder, FolderArchive) and folder.root == tmp_path
    s3 = open_archive("s3://results/budeval/prod?endpoint=http://minio.svc:9000")
    assert isinstance(s3, S3Archive)
    assert (s3.bucket, s3.base_prefix, s3.endpoint) == ("results", "budeval/prod", "http://minio.svc:9000")
    for bad in ("file://host/x", "s3://?endpoint=http://h:1", "ftp://x/y", "s3://b?endpoint=minio:9000"):
        with pytest.raises(ValidationError):
            open_archive(bad)
    monkeypatch.setenv("BUDEVAL_S3_ACCESS_KEY", "only-one")
    with pytest.raises(ValidationError, match="both"):
        open_archive("s3://results?endpoint=http://h:9000")


def test_the_store_linger_comes_from_settings(tmp_path: Path) -> None:
    from budeval.config import Settings

    settings = Settings.from_env({"BUDEVAL_DATA_DIR": str(tmp_path), "BUDEVAL_STORE_LINGER_MS": "0"})
    assert settings.store_linger_ms == 0 and Settings().store_linger_ms == 50
    store = open_store(settings.resolved_store_dsn(), linger_s=settings.store_linger_ms / 1000)
    try:
        assert store._commits._linger_s == 0
    finally:
        store.close()


def test_queries_run_without_jit_compilation(tmp_path: Path) -> None:
    """ClickHouse compiles a query shape with LLVM on its fourth sighting and that query stalls 0.4-0.7 s (seen as
    every fourth view of the web UI's leaderboard): the store's session turns compilation off (QUERY_SETTINGS), and
    takes statements up to 64 MiB."""
    from budeval.storage.factory import QUERY_SETTINGS

    store = open_store(f"chdb://{tmp_path}/ch")
    try:
        got = dict(store._rows("settings", "SELECT name, value FROM system.settings WHERE name IN %(n)s",
                               {"n": list(QUERY_SETTINGS)}))
    finally:
        store.close()
    assert got == {name: str(value) for name, value in QUERY_SETTINGS.items()}  # as sent, in the session
    jit = ("compile_expressions", "compile_aggregate_expressions", "compile_sort_description")
    assert {got[n] for n in jit} == {"0"}
    assert int(got["max_query_size"]) >= 64 << 20  # bound lists are literals: docs/storage.md "Facts learned"
