"""Picks the store and the archive implementation from one DSN / URL, so embedded and cluster differ in config only.

Store DSNs (clickhouse-connect only): ``chdb:///abs/path`` (embedded chDB, one data dir per process) or
``http(s)://user:password@host:port/db`` (a ClickHouse server). Archive URLs: ``file:///abs/path`` (a folder) or
``s3://bucket[/prefix]?endpoint=http://host:port`` with credentials from the settings ``s3_access_key`` /
``s3_secret_key`` (``BUDEVAL_S3_ACCESS_KEY`` / ``BUDEVAL_S3_SECRET_KEY``). Passwords never appear in messages:
:func:`redact_dsn` strips them. Timeouts and retries are settings (``store_*_timeout_s``, ``archive_*``); without
``settings`` these functions use the process's (:meth:`Settings.from_env`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse, urlunparse

from budeval.config import Settings, reveal
from budeval.errors import StoreUnavailableError, ValidationError
from budeval.storage.archive_folder import FolderArchive
from budeval.storage.archive_s3 import S3Archive
from budeval.storage.base import Archive
from budeval.storage.clickhouse import DEFAULT_LINGER_S, ClickHouseStore


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***`` (user and host stay, for diagnosis)."""
    parsed = urlparse(dsn)
    if parsed.password is None:
        return dsn
    host = parsed.hostname or ""
    if parsed.port is not None:
        host = f"{host}:{parsed.port}"
    user = parsed.username or ""
    return urlunparse(parsed._replace(netloc=f"{user}:***@{host}"))


def _scrub(text: str, dsn: str) -> str:
    password = urlparse(dsn).password
    for secret in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(str(secret), "***")
    return text


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _is_plain_path(value: str) -> bool:
    """A value that names a folder: ``/data/x``, ``./x``, ``~/x``, ``x``. Anything that starts like a URL scheme
    (``chdb:x``, ``s3:b``, ``file:x``) is not one: it is left to the DSN/URL checks, which refuse the malformed ones
    (a relative folder whose name has a colon in its first part must be written ``./name``)."""
    return bool(value.strip()) and not _SCHEME.match(value)


def as_store_dsn(value: str) -> str:
    """A store DSN from a DSN or a plain folder path (``/data/ch`` -> ``chdb:///data/ch``, made absolute)."""
    if _is_plain_path(value):
        return "chdb://" + Path(value).expanduser().absolute().as_posix()
    return value


def as_archive_url(value: str) -> str:
    """An archive URL from a URL or a plain folder path (``/data/archive`` -> ``file:///data/archive``, absolute)."""
    if _is_plain_path(value):
        return Path(value).expanduser().absolute().as_uri()
    return value


def embedded_store_held(dsn: str) -> bool:
    """Whether another process holds the embedded chDB store of ``dsn`` (False for a server DSN or no store yet).

    chDB, like clickhouse-server, takes an exclusive ``flock`` on ``{path}/status`` while it has the folder open and
    refuses a second process ("Cannot lock file .../status"); probing that lock (taken and released at once, never
    waited for) tells a caller before chDB prints its own error."""
    import fcntl

    parsed = urlparse(as_store_dsn(dsn))
    if parsed.scheme != "chdb":
        return False
    try:
        fd = os.open(Path(unquote(parsed.path)) / "status", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


#: Settings of every query budeval sends. ClickHouse compiles an expression, aggregate or sort with LLVM once it has
#: seen it three times (``min_count_to_compile_*``): the fourth query of a shape stalls 0.4-0.7 s while it compiles
#: (measured on the web UI's leaderboard: 100 ms pages, every fourth view 460-720 ms), and budeval's queries carry
#: their parameters as literals, so a new evaluation id or dataset set is a new shape. Its queries are small and
#: interactive (they read at most millions of rows, where compiled code gains milliseconds): never compile.
#: ``max_query_size``: bound lists are literals in the statement (a broad suite's listed examples, thousands of eval
#: ids at a reconcile); ClickHouse's 256 KiB default refused them. docs/storage.md "Facts learned".
QUERY_SETTINGS: dict[str, int] = {
    "compile_expressions": 0,
    "compile_aggregate_expressions": 0,
    "compile_sort_description": 0,
    "max_query_size": 64 << 20,
}


def open_store(dsn: str, *, linger_s: float = DEFAULT_LINGER_S, settings: Settings | None = None) -> ClickHouseStore:
    """Connect (chDB: open the engine, creating the folder) and return the store; migrations are ``migrate()``'s.

    ``linger_s``: how long small concurrent writes wait to share an insert while the store is busy (0: never)."""
    import clickhouse_connect

    timeouts = settings if settings is not None else Settings.from_env()
    dsn = as_store_dsn(dsn)
    shown = redact_dsn(dsn)
    parsed = urlparse(dsn)
    if parsed.scheme == "chdb":
        if parsed.netloc or not parsed.path.startswith("/"):
            raise ValidationError(f"use chdb:///absolute/path, not {shown!r}", field="store_dsn")
        Path(parsed.path).mkdir(parents=True, exist_ok=True)
    elif parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            raise ValidationError(f"no host in {shown!r}", field="store_dsn")
    else:
        raise ValidationError(
            f"unsupported store DSN {shown!r}: use chdb:///abs/path or http(s)://user:password@host:port/db",
            field="store_dsn",
        )

    def connect() -> Any:
        try:
            if parsed.scheme == "chdb":
                return clickhouse_connect.get_client(dsn=dsn, settings=QUERY_SETTINGS)
            return clickhouse_connect.get_client(dsn=dsn, connect_timeout=timeouts.store_connect_timeout_s,
                                            send_receive_timeout=timeouts.store_send_receive_timeout_s,
                                            settings=QUERY_SETTINGS)
        except Exception as exc:
            reason = _scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, dsn)
            raise StoreUnavailableError(f"cannot open the ClickHouse store {shown}: {reason}") from None

    embedded = parsed.scheme == "chdb"
    insert_settings = {"max_threads": 1} if embedded else None
    return ClickHouseStore(connect(), shown, connect=connect, insert_settings=insert_settings, linger_s=linger_s)


def open_existing_store(
    dsn: str, *, linger_s: float = DEFAULT_LINGER_S, settings: Settings | None = None
) -> ClickHouseStore | None:
    """:func:`open_store` for readers that must create nothing (``budeval plan``, ``explain``): None for an embedded
    store whose folder does not exist yet (a fresh install: nothing was ever stored); a server is opened as is.
    Migrations are not applied: a store without budeval's tables answers with a :class:`StoreError`."""
    dsn = as_store_dsn(dsn)
    parsed = urlparse(dsn)
    if parsed.scheme == "chdb" and not parsed.netloc and parsed.path.startswith("/") and not Path(parsed.path).exists():
        return None
    return open_store(dsn, linger_s=linger_s, settings=settings)


def open_archive(url: str, settings: Settings | None = None) -> Archive:
    """A folder archive (``file://`` or a plain folder path) or an S3 archive (``s3://bucket[/prefix]?endpoint=...``);
    no I/O yet."""
    url = as_archive_url(url)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise ValidationError(f"use file:///absolute/path, not {url!r}", field="archive_url")
        return FolderArchive(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        bucket = parsed.netloc
        if not bucket:
            raise ValidationError(f"no bucket in {url!r}", field="archive_url")
        query = parse_qs(parsed.query)
        s3 = settings if settings is not None else Settings.from_env()
        endpoint = (query.get("endpoint") or [s3.s3_endpoint])[0]
        region = query["region"][0] if query.get("region") else None
        access, secret = reveal(s3.s3_access_key), reveal(s3.s3_secret_key)
        if (access is None) != (secret is None):
            raise ValidationError("set both BUDEVAL_S3_ACCESS_KEY and BUDEVAL_S3_SECRET_KEY, or neither")
        return S3Archive(
            bucket=bucket,
            base_prefix=parsed.path.strip("/"),
            endpoint=endpoint,
            access_key=access,
            secret_key=secret,
            region=region,
            timeouts_s=(s3.archive_connect_timeout_s, s3.archive_read_timeout_s),
            retries=s3.archive_retries,
            retry_backoff_s=s3.archive_retry_backoff_s,
        )
    raise ValidationError(
        f"unsupported archive URL {url!r}: use file:///abs/path or s3://bucket[/prefix]?endpoint=http://host:port",
        field="archive_url",
    )
