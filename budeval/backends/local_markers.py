"""The local backend's run markers (files under ``.budeval/``, see budeval/backends/local.py) and process checks."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

META = ".budeval"


@dataclass
class _Run:
    eval_id: str
    run_id: str
    work: Path

    @property
    def meta(self) -> Path:
        return self.work / META

    def file(self, name: str) -> Path:
        return self.meta / name

    def has(self, name: str) -> bool:
        return (self.meta / name).exists()

    def read(self, name: str) -> str | None:
        try:
            return (self.meta / name).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None


def _create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` with ``text`` unless it exists; True if this call created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return True


def _write_atomic(path: Path, text: str) -> None:
    # Unique per writer: two instances (or threads) adopting one run must not rename each other's temp file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _proc_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), None if the process does not exist or is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _pid_alive(pid: int, ticks: int | None) -> bool:
    """Alive and the same process as recorded (a pid reused after a reboot is not ours)."""
    if Path("/proc").is_dir():
        now = _proc_start_ticks(pid)
        return now is not None and (ticks is None or now == ticks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_has_members(pgid: int) -> bool:
    proc = Path("/proc")
    if not proc.is_dir():
        return False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False


