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

An endpoint model's tokenizer is loaded by OpenCompass with ``trust_remote_code=True``: a local one must also ship
no code (:func:`check_endpoint_tokenizer`), and the served ``model`` name counts as its path when it looks like one.

Whether the file exists is not checked here (the run reports a missing file); the answer is the same either way, so
a rejection tells nothing about files outside the roots, and never anything of a file's content.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from budeval.config import Settings
from budeval.errors import PolicyError
from budeval.schemas.request import HUB_ID, CustomDataset, EndpointModel, EvalRequest, HuggingFaceModel, is_hub_id

__all__ = ["HUB_ID", "check_file", "check_request_paths", "inside", "is_hub_id", "ships_code"]
#: Files of a tokenizer folder whose ``auto_map`` names classes to import from the folder's own ``*.py`` files.
CODE_CONFIGS = ("config.json", "tokenizer_config.json")


def ships_code(folder: Path) -> bool:
    """Whether a model/tokenizer folder (resolved) brings its own Python: a ``*.py`` file at its top level (where
    ``transformers`` imports remote code from) or an ``auto_map`` in :data:`CODE_CONFIGS`. A config that cannot be
    read or parsed counts as shipping code (it cannot be shown not to); a missing folder ships none."""
    if not folder.is_dir():
        return False
    try:
        if any(entry.suffix == ".py" for entry in folder.iterdir()):
            return True
    except OSError:
        return True
    for name in CODE_CONFIGS:
        config = folder / name
        if not config.exists():
            continue
        try:
            doc = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return True
        if not isinstance(doc, dict) or "auto_map" in doc:
            return True
    return False


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


def check_endpoint_tokenizer(source: EndpointModel, models: list[Path], where: str = "model.source") -> None:
    """The tokenizer OpenCompass loads for an endpoint model, **with** ``trust_remote_code=True`` (its ``OpenAISDK``
    hard-codes it; no config reaches that call): ``tokenizer_path``, else the served ``model`` name. A value that is a
    local path (starts with ``/``, or has a ``..`` part) must resolve inside the models roots to a folder that ships
    no code (:func:`ships_code`); anything else is a hub id or an opaque served-model name. Raises PolicyError."""
    if source.tokenizer_path is not None:
        value, field = source.tokenizer_path, f"{where}.tokenizer_path"
        check_file(value, models, field=field, hub_ok=True)
    else:
        value, field = source.model, f"{where}.model"
        if not (value.startswith("/") or ".." in value.split("/") or "\x00" in value):
            return  # not a path: OpenCompass tries the hub (or tiktoken) under that name
        check_file(value, models, field=field, hub_ok=False)
    if is_hub_id(value) and not value.startswith("/"):
        return
    if ships_code(Path(os.path.realpath(value))):
        raise PolicyError(
            "names a tokenizer folder that ships code (*.py files or an auto_map in config.json/"
            "tokenizer_config.json); OpenCompass would run it for an endpoint model: use a folder without code",
            field=field,
        )


def check_request_paths(request: EvalRequest, settings: Settings) -> None:
    """Every file path of ``request`` (its judge's too) against the roots of ``settings``; raises PolicyError for the
    first outside."""
    models = settings.resolved_models_roots()
    sources = [("model.source", request.model.source)]
    if request.judge is not None:
        sources.append(("judge.model.source", request.judge.model.source))
    for where, source in sources:
        if isinstance(source, HuggingFaceModel):
            check_file(source.path, models, field=f"{where}.path", hub_ok=True)
        if isinstance(source, HuggingFaceModel) and source.tokenizer_path is not None:
            check_file(source.tokenizer_path, models, field=f"{where}.tokenizer_path", hub_ok=True)
        if isinstance(source, EndpointModel):
            check_endpoint_tokenizer(source, models, where)
    datasets = settings.resolved_datasets_roots()
    for index, ref in enumerate(request.datasets or []):
        if isinstance(ref, CustomDataset):
            check_file(ref.path, datasets, field=f"datasets.{index}.path", hub_ok=False)
