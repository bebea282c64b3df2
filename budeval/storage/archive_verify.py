"""Whether an archive really holds a results folder: what retention checks before it removes the folder.

An archive is **verified** for a folder when (1) its ``manifest.json`` is there and parses, (2) every file the
manifest lists is stored with the listed size and its bytes hash to the listed sha256 (read back from the archive,
not taken from metadata), and (3) every file of the local folder (as :func:`budeval.storage.manifest.scan` lists
it) is in the manifest with the same size and sha256 -- a file written after the archive keeps the folder. Each
archive implements ``verify_run`` with :func:`compare_local` and its own read-back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel, ValidationError

from budeval.storage.manifest import Manifest, ManifestFile, scan

_CHUNK = 1 << 20


class ArchiveCheck(BaseModel):
    """The answer of ``Archive.verify_run``: ``ok`` or the first ``reason`` it is not; ``archived_at``: when the
    manifest was written (the archive's clock), None when there is none."""

    ok: bool
    url: str
    reason: str = ""
    archived_at: datetime | None = None
    files: int = 0
    bytes: int = 0


def parse_manifest(body: bytes, where: str) -> Manifest | str:
    """The manifest, or why it cannot be used (a string)."""
    try:
        return Manifest.model_validate_json(body)
    except (ValidationError, ValueError) as exc:
        return f"the manifest at {where} is not valid: {str(exc).splitlines()[0][:200]}"


def compare_local(source: Path, manifest: Manifest) -> str:
    """"" when every file of ``source`` is in ``manifest`` with its size and sha256, else the first difference."""
    local, _ = scan(source, manifest.prefix, {})
    archived = {f.path: f for f in manifest.files}
    for entry in local.files:
        stored = archived.get(entry.path)
        if stored is None:
            return f"{entry.path} is not in the archive (written after it was archived?)"
        if (stored.size, stored.sha256) != (entry.size, entry.sha256):
            return f"{entry.path} differs from its archived copy (changed after it was archived?)"
    return ""


def hash_stream(stream: BinaryIO) -> tuple[int, str]:
    """(bytes read, sha256 hex) of a stream, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def check_stored(entries: Iterable[ManifestFile], read_back: Callable[[str], tuple[int, str] | None]) -> str:
    """"" when each entry's stored bytes (``read_back(path)``: (size, sha256), None when absent) match the entry,
    else the first difference; stops at the first one."""
    for entry in entries:
        got = read_back(entry.path)
        if got is None:
            return f"{entry.path} is missing from the archive"
        if got != (entry.size, entry.sha256):
            return f"{entry.path} in the archive does not match its manifest (size or sha256)"
    return ""
