"""What an archive holds for one run folder: the file list with sizes and sha256, built without following links.

Both archives (folder, S3) upload exactly the files :func:`scan` lists, then ``manifest.json``. Symlinks are never
followed out of the folder: a link whose target stays inside is archived as the target's bytes, any other link (and
every directory link) is listed under ``skipped`` with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from budeval.errors import ArchiveUnavailableError, ValidationError

MANIFEST_NAME = "manifest.json"
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ManifestFile(BaseModel):
    path: str  # relative, '/'-separated
    size: int
    sha256: str


class SkippedEntry(BaseModel):
    path: str
    reason: str


class Manifest(BaseModel):
    format: int = 1
    prefix: str
    files: list[ManifestFile]
    skipped: list[SkippedEntry] = Field(default_factory=list)
    total_bytes: int
    provenance: dict[str, Any] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Deterministic JSON (sorted keys), so an unchanged folder gives a byte-identical manifest."""
        return (json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=1, default=str) + "\n").encode()


def check_prefix(prefix: str) -> str:
    """``eval/run`` style prefixes only: no empty, dot or traversal segments (they become object keys and paths)."""
    parts = prefix.strip("/").split("/")
    if not prefix.strip("/") or any(not _SEGMENT.fullmatch(p) or p in (".", "..") for p in parts):
        raise ValidationError(f"unsafe archive prefix {prefix!r}", field="prefix")
    return "/".join(parts)


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def scan(source: Path, prefix: str, provenance: dict[str, Any]) -> tuple[Manifest, dict[str, Path]]:
    """Hash every regular file under ``source`` (sorted); return the manifest and relative path -> real file.

    Walks with ``os.scandir``: a directory entry already knows whether it is a link, a file or a folder, so a file
    costs one ``stat`` and one read (an evaluation's folder is archived on every evaluation's critical path).
    """
    if not source.is_dir():
        raise ValidationError(f"archive source {source} is not a directory", field="source")
    root = source.resolve()
    files: list[ManifestFile] = []
    skipped: list[SkippedEntry] = []
    local: dict[str, Path] = {}

    def walk(folder: str, rel_folder: str) -> None:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            rel = f"{rel_folder}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                walk(entry.path, f"{rel}/")
            elif entry.is_symlink() and entry.is_dir():
                skipped.append(SkippedEntry(path=rel, reason="directory symlink (never followed)"))
            elif rel == MANIFEST_NAME:
                skipped.append(SkippedEntry(path=rel, reason="reserved name (the archive writes its own)"))
            elif entry.is_symlink():
                target = Path(entry.path).resolve()
                if not target.is_relative_to(root) or not target.is_file():
                    skipped.append(SkippedEntry(path=rel, reason="symlink to a target outside the folder"))
                else:
                    add(rel, target, target.stat().st_size)
            elif not entry.is_file(follow_symlinks=False):
                skipped.append(SkippedEntry(path=rel, reason="not a regular file"))
            else:
                add(rel, Path(entry.path), entry.stat(follow_symlinks=False).st_size)

    def add(rel: str, real: Path, size: int) -> None:
        files.append(ManifestFile(path=rel, size=size, sha256=sha256_file(real)))
        local[rel] = real

    try:
        walk(str(root), "")
    except OSError as exc:
        raise ArchiveUnavailableError(f"cannot read {exc.filename or source}: {exc.strerror or exc}") from exc
    files.sort(key=lambda f: f.path)
    manifest = Manifest(
        prefix=prefix,
        files=files,
        skipped=sorted(skipped, key=lambda s: s.path),
        total_bytes=sum(f.size for f in files),
        provenance=provenance,
    )
    return manifest, local
