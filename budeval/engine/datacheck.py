"""Whether a folder (a datasets volume, ``COMPASS_DATA_CACHE``) holds the data files a suite's datasets read.

Stock datasets read their files by the ``path`` fields of OpenCompass's dataset configs, relative to
``COMPASS_DATA_CACHE``; the paths of each supported config are recorded per OpenCompass version in
``budeval/engine/stock_configs.json`` (``data_paths``, made by ``scripts/stock_config_hashes.py``). Bundled datasets
travel inside the rendered config and need nothing on a volume. A recorded path is present when it is a file, or a
folder with at least one file in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from budeval.engine.catalog import BUNDLED, STOCK, stock_table
from budeval.errors import ValidationError


@dataclass(frozen=True)
class DatasetData:
    """One dataset's verdict: ``kind`` bundled/stock; ``needed`` the recorded relative paths (None: none recorded
    for this OpenCompass version, so it cannot be checked); ``missing`` the needed paths absent under the root."""

    name: str
    kind: str
    needed: tuple[str, ...] | None
    missing: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.needed is not None and not self.missing


@dataclass(frozen=True)
class DataCheck:
    """The verdicts of :func:`check_data` for ``root``, in the order the datasets were given."""

    root: Path
    datasets: list[DatasetData] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.datasets)

    @property
    def missing(self) -> list[str]:
        """Every missing relative path, sorted, without repeats (configs may share a folder)."""
        return sorted({p for d in self.datasets for p in d.missing})

    @property
    def unchecked(self) -> list[str]:
        """Names of stock datasets without recorded paths for the engine version."""
        return [d.name for d in self.datasets if d.needed is None]


def _present(where: Path) -> bool:
    if where.is_file():
        return True
    return where.is_dir() and any(p.is_file() for p in where.rglob("*"))


def check_data(names: list[str], root: Path, engine_version: str) -> DataCheck:
    """Check ``root`` for the data files of the datasets ``names`` (bundled or stock names, e.g. a suite's list).

    Raises ValidationError for an unknown dataset name or a ``root`` that is not a folder."""
    unknown = [n for n in names if n not in BUNDLED and n not in STOCK]
    if unknown:
        raise ValidationError(f"unknown datasets {unknown}", field="datasets")
    if not root.is_dir():
        raise ValidationError(f"{root} is not a folder", field="root")
    table = stock_table().get(engine_version, {})
    out: list[DatasetData] = []
    for name in names:
        if name in BUNDLED:
            out.append(DatasetData(name, "bundled", ()))
            continue
        entry = table.get(name)
        if entry is None:
            out.append(DatasetData(name, "stock", None))
            continue
        needed = tuple(entry.get("data_paths", []))
        missing = tuple(p for p in needed if not _present(root / p))
        out.append(DatasetData(name, "stock", needed, missing))
    return DataCheck(root=root, datasets=out)
