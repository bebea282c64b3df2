"""The embedded default archive: a local folder, written file by file atomically (temporary name, then rename)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from budeval.errors import ArchiveUnavailableError, ValidationError
from budeval.storage.archive_verify import ArchiveCheck, check_stored, compare_local, hash_stream, parse_manifest
from budeval.storage.base import ArchiveReceipt
from budeval.storage.manifest import MANIFEST_NAME, check_prefix, scan, sha256_file

_CHUNK = 1 << 20


def _discard(tmp: Path) -> None:
    """Remove a leftover temporary file; a path that cannot even exist (a parent is a file) is fine."""
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


class FolderArchive:
    """``{root}/{prefix}/...`` plus ``manifest.json``; a file already there with the same sha256 is not copied."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def upload_run(self, source: Path, prefix: str, provenance: dict[str, Any]) -> ArchiveReceipt:
        prefix = check_prefix(prefix)
        dest_root = self.root / prefix
        src = source.resolve()
        resolved_dest = dest_root.resolve()
        if resolved_dest.is_relative_to(src) or src.is_relative_to(resolved_dest):
            raise ValidationError(f"the archive folder {dest_root} and the source {source} overlap", field="archive")
        manifest, local = scan(source, prefix, provenance)
        uploaded = skipped = 0
        folders: set[Path] = set()  # made already in this upload
        for entry in manifest.files:
            dest = dest_root / entry.path
            if self._holds(dest, entry.size, entry.sha256):
                skipped += 1
                continue
            if dest.parent not in folders:
                self._mkdir(dest.parent, entry.path)
                folders.add(dest.parent)
            self._copy(local[entry.path], dest, entry.sha256, entry.path)
            uploaded += 1
        body = manifest.to_bytes()
        digest = hashlib.sha256(body).hexdigest()
        manifest_path = dest_root / MANIFEST_NAME
        if self._holds(manifest_path, len(body), digest):
            skipped += 1
        else:
            self._write(manifest_path, body)
            uploaded += 1
        return ArchiveReceipt(
            url=dest_root.resolve().as_uri() + "/",
            files=len(manifest.files) + 1,
            bytes=manifest.total_bytes + len(body),
            uploaded=uploaded,
            skipped=skipped,
        )

    def verify_run(self, source: Path, prefix: str) -> ArchiveCheck:
        """Whether ``{root}/{prefix}`` holds ``source`` (budeval/storage/archive_verify.py): every archived file read
        back and hashed, every local file listed. Never raises for a missing or damaged archive: ``ok`` is False."""
        prefix = check_prefix(prefix)
        dest_root = self.root / prefix
        url = dest_root.resolve().as_uri() + "/"
        manifest_path = dest_root / MANIFEST_NAME
        try:
            body = manifest_path.read_bytes()
            archived_at = datetime.fromtimestamp(manifest_path.stat().st_mtime, UTC)
        except OSError as exc:
            return ArchiveCheck(ok=False, url=url, reason=f"no manifest at {url}: {exc.strerror or exc}")
        manifest = parse_manifest(body, url)
        if isinstance(manifest, str):
            return ArchiveCheck(ok=False, url=url, reason=manifest, archived_at=archived_at)

        def read_back(rel: str) -> tuple[int, str] | None:
            path = dest_root / rel
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    return None
                with path.open("rb") as fh:
                    return hash_stream(fh)
            except OSError:
                return None

        reason = check_stored(manifest.files, read_back) or compare_local(source, manifest)
        return ArchiveCheck(ok=not reason, url=url, reason=reason, archived_at=archived_at,
                            files=len(manifest.files), bytes=manifest.total_bytes)

    @staticmethod
    def _holds(dest: Path, size: int, sha256: str) -> bool:
        """A regular file (not a link) of this size and hash is already there."""
        try:
            st = os.lstat(dest)
            return stat.S_ISREG(st.st_mode) and st.st_size == size and sha256_file(dest) == sha256
        except OSError:
            return False

    @staticmethod
    def _mkdir(folder: Path, rel: str) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveUnavailableError(
                f"creating the folder for {rel} failed: {exc.strerror or exc}; the source folder is unchanged"
            ) from exc

    @staticmethod
    def _tmp(dest: Path) -> Path:
        return dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:12]}"

    def _copy(self, src: Path, dest: Path, sha256: str, rel: str) -> None:
        """Copy ``src`` to ``dest`` (its folder exists), failing if the bytes no longer have the listed hash."""

        def fill(fout: BinaryIO) -> None:
            digest = hashlib.sha256()
            with src.open("rb") as fin:
                while chunk := fin.read(_CHUNK):
                    digest.update(chunk)
                    fout.write(chunk)
            if digest.hexdigest() != sha256:
                raise ArchiveUnavailableError(f"{rel} changed while it was archived; the source is unchanged, retry")

        self._replace(dest, f"copying {rel} to {dest}", fill)

    def _write(self, dest: Path, body: bytes) -> None:
        self._mkdir(dest.parent, dest.name)
        self._replace(dest, f"writing {dest}", lambda fout: fout.write(body))

    def _replace(self, dest: Path, what: str, fill: Callable[[BinaryIO], object]) -> None:
        """Write through a temporary name beside ``dest``, fsync, rename: ``dest`` is whole or untouched."""
        tmp = self._tmp(dest)
        try:
            with tmp.open("wb") as fout:
                fill(fout)
                fout.flush()
                os.fsync(fout.fileno())
            os.replace(tmp, dest)
        except BaseException as exc:
            _discard(tmp)
            if isinstance(exc, OSError):
                raise ArchiveUnavailableError(
                    f"{what} failed: {exc.strerror or exc}; the source folder is unchanged"
                ) from exc
            raise
