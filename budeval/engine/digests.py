"""sha256 digests of files and folders, each file's bytes read at most once per (path, size, mtime).

The identity of an evaluation (:mod:`budeval.engine.identity`) digests model weights and dataset files, which may be
many gigabytes: reading them on every request would make a request cost minutes. So:

- a file inside a Hugging Face cache is a symlink ``snapshots/<commit>/<name> -> ../../blobs/<sha256>`` for
  LFS-stored files (weights); the blob's name *is* the sha256 of its bytes, so it is used without reading anything
  (``huggingface_hub`` names LFS blobs by their sha256 and git blobs by a 40-hex sha1, which is not used);
- any other file is hashed once and remembered in a JSON cache file by (absolute path, size, mtime in ns). A file
  rewritten in place changes its mtime (and usually its size), so it is read again; a copy that keeps both is the
  documented limit of this shortcut (docs/workflow.md).

The cache file is shared by the threads of a process (a lock) and by processes (written whole to a temporary file
then renamed; a writer merges what is on disk first, so concurrent writers lose at most each other's newest entries,
which are recomputed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class DigestStats:
    """What a :class:`DigestCache` did: files whose bytes it read, and how many bytes (tests prove cache hits)."""

    hashed_files: int = 0
    hashed_bytes: int = 0
    from_cache: int = 0
    from_blob_name: int = 0


@dataclass
class DigestCache:
    """File digests memoised in ``path`` (a JSON file; None keeps them in memory only)."""

    path: Path | None = None
    stats: DigestStats = field(default_factory=DigestStats)
    _entries: dict[str, dict[str, Any]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def file(self, file: Path) -> str:
        """sha256 hex of ``file``'s bytes. Raises ``OSError`` when it cannot be read."""
        target = file.resolve()
        if file.is_symlink() and target.parent.name == "blobs" and _SHA256.match(target.name):
            target.stat()  # a dangling link is an error, not a digest
            with self._lock:
                self.stats.from_blob_name += 1
            return target.name
        st = target.stat()
        key = str(target)
        with self._lock:
            entry = self._load().get(key)
            if entry is not None and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
                self.stats.from_cache += 1
                return str(entry["sha256"])
        digest = self._hash(target)
        with self._lock:
            self.stats.hashed_files += 1
            self.stats.hashed_bytes += st.st_size
            self._load()[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
            self._save()
        return digest

    def files(self, root: Path, names: list[str]) -> dict[str, str]:
        """``{relative name: sha256}`` of ``names`` (relative to ``root``), in sorted order."""
        return {name: self.file(root / name) for name in sorted(names)}

    def folder(self, root: Path) -> dict[str, str]:
        """``{relative path: sha256}`` of every regular file under ``root`` (dot files and folders skipped)."""
        names = [
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        ]
        return self.files(root, names)

    # -- internals ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _hash(path: Path) -> str:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict[str, dict[str, Any]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # missing or damaged: digests are recomputed, never trusted from a broken file
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def _save(self) -> None:
        if self.path is None or self._entries is None:
            return
        merged = {**self._read(), **self._entries}
        self._entries = merged
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(merged, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only data dir costs re-hashing later, not a failed evaluation


def combine(parts: dict[str, Any]) -> str:
    """sha256 hex of a JSON document (keys sorted, compact): the digest of a set of named digests."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
