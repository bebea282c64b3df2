"""Reads OpenCompass's ``summary_{ts}.csv``: the authoritative scores of a run.

Header ``dataset,version,metric,mode,<model abbr>...`` (model columns in config order); a missing score is a bare
``-``; when no model has a result, ``version,metric,mode`` are ``-`` too. Scores are on the 0-100 scale.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from budeval.engine.results.loading import warn_replaced
from budeval.errors import ResultParseError
from budeval.schemas.results import MetricRow

FIXED = ("dataset", "version", "metric", "mode")
MISSING = "-"


@dataclass(frozen=True)
class Summary:
    path: Path
    models: list[str]
    datasets: list[str]
    rows: list[MetricRow]


def read_summary(path: Path, display: str) -> Summary:
    raw = path.read_bytes()
    if not raw.strip():
        raise ResultParseError("empty summary", path=display, line=1)
    text = raw.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - raw.count("\ufffd".encode())
    if replaced:  # a model or dataset name with bad bytes is still that name; the scores are ASCII
        warn_replaced(display, replaced)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as exc:
        raise ResultParseError(f"{exc}", path=display, line=1) from None
    if tuple(h.strip() for h in header[:4]) != FIXED or len(header) < 5:
        raise ResultParseError(
            f"not an OpenCompass summary (header {','.join(header)[:120]!r})", path=display, line=1
        )
    models = [h.strip() for h in header[4:]]
    rows: list[MetricRow] = []
    datasets: list[str] = []
    try:
        for record in reader:
            line = reader.line_num
            if not record or not any(cell.strip() for cell in record):
                continue
            if len(record) != len(header):
                raise ResultParseError(
                    f"line {line} has {len(record)} cells, the header has {len(header)} (truncated?)",
                    path=display,
                    line=line,
                )
            dataset, version, metric, mode = (cell.strip() for cell in record[:4])
            if not dataset:
                raise ResultParseError(f"line {line} has no dataset name", path=display, line=line)
            if dataset.startswith("---") and all(cell.strip() == MISSING for cell in record[1:]):
                continue  # a summarizer's section divider ("--------- Exam ---------"), not a dataset
            if dataset not in datasets:
                datasets.append(dataset)
            for model, cell in zip(models, record[4:], strict=True):
                rows.append(
                    MetricRow(
                        model=model,
                        dataset=dataset,
                        metric=metric,
                        score=_score(cell.strip(), display, line),
                        version=version,
                        mode=mode,
                    )
                )
    except csv.Error as exc:
        raise ResultParseError(f"{exc}", path=display, line=reader.line_num) from None
    return Summary(path=path, models=models, datasets=datasets, rows=rows)


def _score(cell: str, display: str, line: int) -> float | None:
    if cell in (MISSING, ""):
        return None
    try:
        value = float(cell)
    except ValueError:
        message = f"line {line}: score {cell[:40]!r} is not a number"
        raise ResultParseError(message, path=display, line=line) from None
    if not math.isfinite(value):
        raise ResultParseError(f"line {line}: score {cell!r} is not finite", path=display, line=line)
    return value
