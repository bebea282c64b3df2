"""Retention of the results volume: which evaluation folders may go, and removing them (``budeval gc`` and the
service's housekeeping loop).

An evaluation's folder ``{results_root}/{eval_id}`` (its runs' OpenCompass output) is removed only when all hold:

* its row is final (not ``pending``/``running``: a forced re-run writes into the same folder) and not
  ``archive_pending`` (the housekeeping loop has yet to upload it);
* it was archived (``archive_url`` set; a failed archive leaves it unset and the folder stays for good: it is the only
  copy) and that URL is the configured archive's for this evaluation;
* the archive is verified (``Archive.verify_run``: every archived file read back matches the manifest's sha256,
  every local file is in the manifest);
* ``grace_s`` seconds passed since the evaluation finished and since the manifest was written.

Anything else keeps the folder, with the reason in the plan. Entries of the results root that are not DNS labels
(``_cache``, ``_datasets``, ``_models``, ``_clickhouse``, dot files) are never looked at: eval ids are DNS labels.
A folder is first renamed to a hidden name (atomic), then deleted: a re-run that starts meanwhile gets a new folder.
docs/storage.md "Retention".
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from budeval.errors import BudevalError
from budeval.logs import get_logger
from budeval.schemas.ids import DNS_LABEL
from budeval.storage.base import Archive, EvaluationRecord

_LOG = get_logger(component="retention")

Action = Literal["remove", "keep"]


class FolderVerdict(BaseModel):
    """One folder of the results volume: ``remove`` or ``keep`` and why (``bytes``: its files' total size)."""

    eval_id: str
    path: str
    action: Action
    reason: str
    bytes: int = 0
    archive_url: str | None = None
    archived_at: datetime | None = None
    removed: bool = False


def folder_bytes(path: Path) -> int:
    """Total size of the regular files under ``path`` (links not followed); unreadable entries count 0."""
    total = 0
    for dirpath, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += st.st_size
    return total


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def judge(record: EvaluationRecord | None, folder: Path, archive: Archive, grace_s: float,
          now: datetime) -> FolderVerdict:
    """The verdict on one evaluation folder (reads the archive back only when everything cheaper allows removal).

    Archive errors (unreachable) keep the folder with the error as the reason; nothing here raises for them."""
    eval_id = folder.name
    verdict = FolderVerdict(eval_id=eval_id, path=str(folder), action="keep", reason="",
                            archive_url=record.archive_url if record else None)
    grace = timedelta(seconds=grace_s)
    if record is None:
        verdict.reason = "no evaluation row for this folder (not budeval's, or its row is gone)"
    elif record.status in ("pending", "running"):
        verdict.reason = f"the evaluation is {record.status}"
    elif record.archive_pending:
        why = record.provenance.get("archive_pending_reason") or "the archive was unreachable"
        verdict.reason = f"archive pending ({why}); the housekeeping loop uploads it first"
    elif not record.archive_url:
        why = record.provenance.get("archive_error") or record.reason or "no archive URL recorded"
        verdict.reason = f"not archived ({why}): this folder is the only copy"
    elif (finished := _aware(record.finished_at)) is not None and now < finished + grace:
        verdict.reason = f"in its grace period until {(finished + grace).isoformat(timespec='seconds')}"
    else:
        try:
            check = archive.verify_run(folder, eval_id)
        except BudevalError as exc:
            verdict.reason = f"archive not verified: {exc}"
            return verdict
        verdict.archived_at = _aware(check.archived_at)
        if check.url != record.archive_url:
            verdict.reason = f"archived at {record.archive_url}, not in the configured archive ({check.url})"
        elif not check.ok:
            verdict.reason = f"archive not verified: {check.reason}"
        elif verdict.archived_at is not None and now < verdict.archived_at + grace:
            verdict.reason = f"in its grace period until {(verdict.archived_at + grace).isoformat(timespec='seconds')}"
        else:
            verdict.action = "remove"
            verdict.reason = f"archive verified ({check.files} files, {check.bytes} bytes) and grace period passed"
    return verdict


def plan(results_root: Path, lookup: Callable[[str], EvaluationRecord | None], archive: Archive,
         grace_s: float, now: datetime | None = None) -> list[FolderVerdict]:
    """A verdict for every evaluation folder under ``results_root`` (sorted by eval id); ``lookup``: the store's
    ``get_evaluation``. A missing results root is an empty plan."""
    now = now or datetime.now(UTC)
    try:
        entries = sorted(os.scandir(results_root), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    out: list[FolderVerdict] = []
    for entry in entries:
        if not DNS_LABEL.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        folder = Path(entry.path)
        verdict = judge(lookup(entry.name), folder, archive, grace_s, now)
        verdict.bytes = folder_bytes(folder)
        out.append(verdict)
    return out


def remove(verdict: FolderVerdict, lookup: Callable[[str], EvaluationRecord | None]) -> FolderVerdict:
    """Remove a folder judged ``remove``, after reading its row again (a re-run may have begun since the plan): the
    folder is renamed to ``.gc-{eval_id}-{random}`` beside it, then deleted. Returns the verdict with ``removed``."""
    if verdict.action != "remove":
        return verdict
    record = lookup(verdict.eval_id)
    if record is None or record.status in ("pending", "running") or record.archive_pending \
            or record.archive_url != verdict.archive_url:
        return verdict.model_copy(update={"action": "keep", "reason": "its row changed since the plan"})
    folder = Path(verdict.path)
    doomed = folder.with_name(f".gc-{verdict.eval_id}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(folder, doomed)
    except OSError as exc:
        return verdict.model_copy(update={"action": "keep", "reason": f"cannot remove: {exc.strerror or exc}"})
    shutil.rmtree(doomed, ignore_errors=True)
    _LOG.info("results folder removed", eval_id=verdict.eval_id, bytes=verdict.bytes,
              archive_url=verdict.archive_url)
    return verdict.model_copy(update={"removed": True})


def collect(results_root: Path, store: Any, archive: Archive, grace_s: float, *, dry_run: bool,
            now: datetime | None = None) -> list[FolderVerdict]:
    """:func:`plan`, then (unless ``dry_run``) :func:`remove` of every ``remove`` verdict."""
    verdicts = plan(results_root, store.get_evaluation, archive, grace_s, now)
    if dry_run:
        return verdicts
    return [remove(v, store.get_evaluation) for v in verdicts]
