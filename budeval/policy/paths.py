"""Files a request may make OpenCompass read: custom datasets under the datasets roots, models under the models roots.

A request names files by path: a custom dataset's ``.jsonl``, a Hugging Face model folder, a tokenizer folder. Left
alone, that is a read of any file the service can read (its rows would end up in ClickHouse, the archive and the
endpoint; a folder's ``config.json`` in a failure message). So every such path must **resolve** -- symlinks followed,
``/models/x -> /etc`` is outside -- to a place inside one of the configured roots (``datasets_root``,
``models_root``; :meth:`budeval.config.Settings.resolved_datasets_roots`).

How a hub id is told from a path: a value that starts with ``/`` is a local path; a value of the form ``name`` or
``org/name`` (letters, digits, ``_ . -``; not starting with ``.``; at most one ``/``) is a Hugging Face hub id and is
left to the hub (or its cache, offline); anything else (``./x``, ``~/x``, ``a/b/c``) is refused -- a relative path
would be read relative to the run's working directory. Custom datasets are files, so they must be absolute paths.

Whether the file exists is not checked here (the run reports a missing file); the answer is the same either way, so
a rejection tells nothing about files outside the roots, and never anything of a file's content.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from budeval.config import Settings
from budeval.errors import PolicyError
from budeval.schemas.request import HUB_ID, CustomDataset, EndpointModel, EvalRequest, HuggingFaceModel, is_hub_id

__all__ = ["HUB_ID", "check_file", "check_request_paths", "inside", "is_hub_id"]


def inside(path: Path, roots: Iterable[Path]) -> bool:
    """Whether ``path`` (already resolved) is one of ``roots`` (resolved here) or below one."""
    for root in roots:
        real = Path(os.path.realpath(root))
        if path == real or real in path.parents:
            return True
    return False


def check_file(value: str, roots: list[Path], *, field: str, hub_ok: bool) -> None:
    """Raises PolicyError unless ``value`` is a hub id (when ``hub_ok``) or resolves inside one of ``roots``."""
    if hub_ok and is_hub_id(value):
        return
    shown = ", ".join(str(r) for r in roots) or "(none configured)"
    what = "an absolute path inside " + shown + (" or a hub id 'org/name'" if hub_ok else "")
    if not value.startswith("/") or "\x00" in value:
        raise PolicyError(f"must be {what}", field=field)
    resolved = Path(os.path.realpath(value))  # follows every symlink that exists; the rest is taken as written
    if not inside(resolved, roots):
        raise PolicyError(f"must resolve to a place inside {shown} (symlinks are followed)", field=field)


def check_request_paths(request: EvalRequest, settings: Settings) -> None:
    """Every file path of ``request`` against the roots of ``settings``; raises PolicyError for the first outside."""
    source = request.model.source
    models = settings.resolved_models_roots()
    if isinstance(source, HuggingFaceModel):
        check_file(source.path, models, field="model.source.path", hub_ok=True)
    if isinstance(source, HuggingFaceModel | EndpointModel) and source.tokenizer_path is not None:
        check_file(source.tokenizer_path, models, field="model.source.tokenizer_path", hub_ok=True)
    datasets = settings.resolved_datasets_roots()
    for index, ref in enumerate(request.datasets or []):
        if isinstance(ref, CustomDataset):
            check_file(ref.path, datasets, field=f"datasets.{index}.path", hub_ok=False)
