"""A run folder to archive and a fingerprint of a folder tree (proves the source is never touched)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def make_run_folder(root: Path) -> Path:
    run = root / "run"
    ts = run / "20261123_081443"
    (ts / "summary").mkdir(parents=True)
    (ts / "predictions" / "m").mkdir(parents=True)
    (ts / "summary" / "summary_20261123_081443.csv").write_text(
        "dataset,version,metric,mode,m\nqa,abc,accuracy,gen,50.00\n"
    )
    (ts / "predictions" / "m" / "qa.json").write_bytes(b'{"0": {"prediction": "Paris", "gold": "Paris"}}\n' * 50)
    (ts / "empty.txt").write_bytes(b"")
    (run / ".budeval").mkdir()
    (run / ".budeval" / "exit_code").write_text("0\n")
    return run


def fingerprint(root: Path) -> dict[str, tuple[str, int, str]]:
    """relative path -> (kind, mode, sha256 or link target) for every entry, links not followed."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if path.is_symlink():
                out[rel] = ("link", st.st_mode, os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", st.st_mode, "")
            else:
                out[rel] = ("file", st.st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return out
