"""Reads the tables OpenCompass 0.5.4's summarizers write, whatever their layout, into score cells.

Layouts (header -> meaning; docs/parser.md has the full list with the source lines):

- ``dataset,version,metric,mode,<model>...`` -- ``summarizers/default.py`` (``DefaultSummarizer``, also used by most
  others): one row per (dataset, metric), one column per model. Section dividers (``--------- Exam ---------``, all
  other cells ``-``) and repeated header lines are not datasets.
- ``dataset,<model>...`` -- ``summarizers/needlebench.py``: no version/metric/mode columns, repeated headers and
  divider rows between sections; the metric is not named (``-``).
- ``Dataset,Detailed Scores,<model>...`` -- ``summarizers/subjective/*`` ``Subjective_all_results-judged-by--{judge}``:
  one row per (dataset, metric), judged by the judge in the file name.
- ``<label>,<metric>...`` -- a subjective summarizer's per-dataset ``{dataset}-judged-by--{judge}.csv``: one row per
  model (the label may carry a prefix such as ``win_``), one column per metric; AlpacaEval appends one header+row
  block per compared model (a row of non-numbers is a new header).
- ``,<model>...`` -- CompassArena's ``{dataset}-judged-by--{judge}-report.csv``: one row per metric, one column per
  model.
- ``dataset,...,model_name,...`` -- a long table with a model column (CompassArena Bradley-Terry's
  ``summary_{ts}_by_{judge}.csv``): one row per (dataset, model), every other numeric column a metric.
PretrainSummarizer's pseudo rows (``time``/``checkpoint``/``max_seq_len``, whose version/metric/mode cells repeat the
header's) and section rows (``---name``, with or without a section average) are not datasets.

Values: ``-`` or empty is a missing score; anything else must be a finite number. NaN, infinities and text become a
missing score with a ``reason`` (one bad cell never costs the rest of the table). A table whose header is none of the
above is a :class:`~budeval.errors.ResultParseError` (the caller notes it and scores from the results files).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from budeval.engine.results.layout import judge_of
from budeval.engine.results.loading import warn_replaced
from budeval.errors import ResultParseError
from budeval.schemas.results import MetricRow

DEFAULT = ("dataset", "version", "metric", "mode")
SUBJECTIVE_ALL = ("dataset", "detailed scores")
MISSING = "-"
NO_METRIC = "-"


@dataclass
class Summary:
    """One summary file read: its layout, the models it has columns for, its datasets in order and its cells."""

    path: Path
    display: str
    layout: str  # default | needlebench | subjective | subjective_dataset
    models: list[str]
    datasets: list[str]
    rows: list[MetricRow]
    judge: str | None = None
    #: Problems of single lines or cells (truncated line, bad value): the rest of the table is kept.
    notes: list[str] = field(default_factory=list)


def parse_score(cell: str, metric: str) -> tuple[float | None, str | None]:
    """(score, reason) of one cell: ``-``/empty -> (None, None); a finite number -> (value, None); NaN, an infinity
    or text -> (None, why)."""
    cell = cell.strip()
    if cell in (MISSING, ""):
        return None, None
    what = metric if metric not in ("", NO_METRIC) else "score"
    try:
        value = float(cell)
    except ValueError:
        return None, f"{what} {cell[:40]!r} is not a number"
    if math.isnan(value):
        return None, f"{what} is NaN"
    if not math.isfinite(value):
        return None, f"{what} is infinite"
    return value, None


def read_summary(path: Path, display: str, known_models: Iterable[str] = ()) -> Summary:
    """Read one summary CSV. ``known_models``: model abbrs seen elsewhere in the run (maps per-dataset subjective
    rows such as ``win_<model>`` to their model). Raises ResultParseError when the file is empty or not a layout above.
    """
    raw = path.read_bytes()
    if not raw.strip():
        raise ResultParseError("empty summary", path=display, line=1)
    text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")  # a byte-order mark is not a header
    replaced = text.count("\ufffd") - raw.count("\ufffd".encode())
    if replaced:  # a model or dataset name with bad bytes is still that name; the scores are ASCII
        warn_replaced(display, replaced)
    try:
        records = [(n, r) for n, r in _records(text) if any(cell.strip() for cell in r)]
    except csv.Error as exc:
        raise ResultParseError(f"{exc}", path=display) from None
    if not records:
        raise ResultParseError("empty summary", path=display, line=1)
    header = [h.strip() for h in records[0][1]]
    lowered = tuple(h.lower() for h in header)
    summary = Summary(path, display, "", [], [], [], judge=judge_of(path.name))
    if "model_name" in lowered and "dataset" in lowered:
        summary.layout = "long"
        _read_long(summary, records, header)
    elif lowered[:4] == DEFAULT and len(header) > 4:
        summary.layout, summary.models = "default", header[4:]
        _read_by_model(summary, records, header, fixed=4)
    elif lowered[:2] == SUBJECTIVE_ALL and len(header) > 2:
        summary.layout, summary.models = "subjective", header[2:]
        _read_by_model(summary, records, header, fixed=2)
    elif lowered[0] == "dataset" and len(header) > 1:
        summary.layout, summary.models = "needlebench", header[1:]
        _read_by_model(summary, records, header, fixed=1)
    elif summary.judge is not None and len(header) > 1 and header[0] == "":
        summary.layout = "subjective_report"
        _read_report(summary, records, header)
    elif summary.judge is not None and len(header) > 1:
        summary.layout = "subjective_dataset"
        _read_by_metric(summary, records, header, list(known_models))
    else:
        raise ResultParseError(
            f"not an OpenCompass summary layout (header {','.join(header)[:120]!r})", path=display, line=1
        )
    return summary


def _records(text: str) -> Iterable[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    for record in reader:
        yield reader.line_num, record


def _is_divider(record: list[str]) -> bool:
    """A summarizer's section row: ``--------- Exam ---------`` with ``-`` in every other cell, or PretrainSummarizer's
    ``---exam`` carrying the section's average (an average of rows above, not a dataset)."""
    return record[0].strip().startswith("---")


def _read_by_model(summary: Summary, records: list[tuple[int, list[str]]], header: list[str], fixed: int) -> None:
    """Rows are (dataset[, version, metric, mode] | dataset, metric), one column per model."""
    width = len(header)
    for line, record in records[1:]:
        cells = [c.strip() for c in record]
        if [c.lower() for c in cells] == [h.lower() for h in header] or _is_divider(record):
            continue  # a repeated header (NeedleBench) or a section divider
        if fixed == 4 and [c.lower() for c in cells[1:4]] == list(DEFAULT[1:]):
            continue  # PretrainSummarizer's pseudo rows (time, checkpoint, max_seq_len)
        dataset = cells[0]
        if not dataset:
            summary.notes.append(f"{summary.display}:{line}: a line without a dataset name was skipped")
            continue
        if fixed == 4:
            version, metric, mode = cells[1:4] if len(cells) >= 4 else (MISSING, NO_METRIC, MISSING)
        elif fixed == 2:
            version, metric, mode = MISSING, cells[1] if len(cells) > 1 else NO_METRIC, MISSING
        else:
            version, metric, mode = MISSING, NO_METRIC, MISSING
        broken = None
        if len(cells) != width:
            broken = f"summary line {line} has {len(cells)} cells, the header has {width} (truncated?)"
            summary.notes.append(f"{summary.display}:{line}: {broken}")
        if dataset not in summary.datasets:
            summary.datasets.append(dataset)
        values = cells[fixed:width] if broken is None else []
        for position, model in enumerate(summary.models):
            score, reason = parse_score(values[position], metric) if position < len(values) else (None, broken)
            if reason is not None and broken is None:
                summary.notes.append(f"{summary.display}:{line}: {model} {dataset}: {reason}")
            summary.rows.append(_row(summary, model, dataset, metric, score, reason, version, mode))


def _read_by_metric(
    summary: Summary, records: list[tuple[int, list[str]]], header: list[str], known_models: list[str]
) -> None:
    """A per-dataset judged table: one row per model (label), one column per metric; the dataset is the file name
    before ``-judged-by--``."""
    dataset = summary.path.name.split("-judged-by--", 1)[0]
    summary.datasets.append(dataset)
    metrics = header[1:]
    for line, record in records[1:]:
        cells = [c.strip() for c in record]
        if not cells or not cells[0]:
            continue
        if len(cells) > 1 and all(parse_score(c, "")[1] is not None for c in cells[1:]):
            metrics = cells[1:]  # AlpacaEval: the next block's header (``{base}_vs_{model},total,...``)
            continue
        label = cells[0]
        model = next((m for m in known_models if label == m or label.endswith(f"_{m}")), label)
        if model not in summary.models:
            summary.models.append(model)
        for position, metric in enumerate(metrics, start=1):
            score, reason = parse_score(cells[position], metric) if position < len(cells) else (None, "truncated line")
            if reason is not None:
                summary.notes.append(f"{summary.display}:{line}: {model} {dataset}: {reason}")
            summary.rows.append(_row(summary, model, dataset, metric, score, reason, MISSING, MISSING))


def _read_report(summary: Summary, records: list[tuple[int, list[str]]], header: list[str]) -> None:
    """A judged report with models as columns (header ``,<model>...``): one row per metric label."""
    dataset = summary.path.name.split("-judged-by--", 1)[0]
    summary.datasets.append(dataset)
    summary.models = header[1:]
    for line, record in records[1:]:
        cells = [c.strip() for c in record]
        if not cells or not cells[0]:
            continue
        for position, model in enumerate(summary.models, start=1):
            score, reason = parse_score(cells[position], cells[0]) if position < len(cells) else (None, None)
            if reason is not None:
                summary.notes.append(f"{summary.display}:{line}: {model} {dataset}: {reason}")
            summary.rows.append(_row(summary, model, dataset, cells[0], score, reason, MISSING, MISSING))


#: Columns of a long table that name things rather than score them.
_LONG_KEYS = frozenset({"dataset", "version", "base_model", "metric", "mode", "model_name", "model", "judge_model"})


def _read_long(summary: Summary, records: list[tuple[int, list[str]]], header: list[str]) -> None:
    """One row per (dataset, model) (``model_name`` column); every other column with a number is a metric."""
    lowered = [h.lower() for h in header]
    dataset_at, model_at = lowered.index("dataset"), lowered.index("model_name")
    version_at = lowered.index("version") if "version" in lowered else None
    for line, record in records[1:]:
        cells = [c.strip() for c in record]
        if len(cells) != len(header):
            summary.notes.append(f"{summary.display}:{line}: has {len(cells)} cells, the header has {len(header)}")
            continue
        dataset, model = cells[dataset_at], cells[model_at]
        if not dataset or not model:
            continue
        if dataset not in summary.datasets:
            summary.datasets.append(dataset)
        if model not in summary.models:
            summary.models.append(model)
        version = cells[version_at] if version_at is not None else MISSING
        for position, name in enumerate(header):
            if lowered[position] in _LONG_KEYS:
                continue
            score, _ = parse_score(cells[position], name)
            if score is not None:
                summary.rows.append(_row(summary, model, dataset, name, score, None, version, MISSING))


def _row(
    summary: Summary,
    model: str,
    dataset: str,
    metric: str,
    score: float | None,
    reason: str | None,
    version: str,
    mode: str,
) -> MetricRow:
    return MetricRow(
        model=model,
        dataset=dataset,
        metric=metric or NO_METRIC,
        score=score,
        version=version or MISSING,
        mode=mode or MISSING,
        reason=reason,
        judge=summary.judge,
        source=summary.display,
    )
