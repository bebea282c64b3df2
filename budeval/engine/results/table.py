"""A run's scores and per-(model, dataset) statuses, from every source OpenCompass writes, merged.

Sources (docs/parser.md): the newest pass's default summaries (``summary/summary_{ts}[_by_{judge}].csv``), the other
summarizers' tables (``summary/{ts}/*.csv``, ``summary/summary_{ts}/*.csv``), each ``results/{model}/{dataset}.json``
and, for what was never scored, the task logs and the inference checkpoint. Rules:

- **Which (model, dataset)**: every pair seen anywhere -- a summary cell, a results file, a predictions file, a task
  log -- so a dataset that ran but is absent from the summary keeps its scores and predictions. Summary columns named
  by a model's ``summarizer_abbr`` are that model; a summary cell whose dataset differs from a file's only by the
  comma the CSV writer turned into a space is that dataset.
- **Which value**: a metric in the results file wins over the summary's cell of the same name (full precision; the
  summary rounds to two decimals). Summary rows the results file lacks (groups, averages, subjective and NeedleBench
  tables) are kept; a summary row that names no metric (NeedleBench) gives way to the results file's metrics.
- **Status**: ``ok`` all scores finite; ``partial`` some; ``failed`` none and a reason (the results file's ``error``,
  a NaN, an error line in the task logs, no results file, outputs outside the run folder); ``missing`` none and no
  reason found, or a summary group of the config (a ``summary_groups`` name) without a score. A dataset judged by an
  LLM judge (``results/{model}_judged-by--{judge}/``) is ``ok``: its scores are in the subjective summaries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from budeval.engine.results.layout import (
    JUDGE_OUTPUT,
    JUDGED_BY,
    META_REVIEWED_BY,
    RunLayout,
    judge_of,
    last_error,
    not_utf8,
    os_reason,
)
from budeval.engine.results.runconfig import RunConfig, read_run_config
from budeval.engine.results.scores import ResultScores, read_result_scores
from budeval.engine.results.summary import NO_METRIC, Summary, read_summary
from budeval.errors import OutsideRunError, ResultParseError
from budeval.logs import get_logger
from budeval.schemas.results import DatasetStatus, MetricRow

Pair = tuple[str, str]
SUBJECTIVE_ALL_PREFIX = "Subjective_all_results"
OUTSIDE_REASON = "outputs not under the run folder (the model or dataset abbr leads outside it; nothing was read)"


@dataclass
class ScoreTable:
    """Everything but the predictions: ordered models and datasets, score rows, statuses, the summaries read."""

    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    metrics: list[MetricRow] = field(default_factory=list)
    statuses: list[DatasetStatus] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    judges: list[str] = field(default_factory=list)
    config: RunConfig = field(default_factory=RunConfig)
    config_file: Path | None = None
    #: (model, dataset) -> the results file to read verdicts from (only pairs whose files are inside the run).
    results_files: dict[Pair, Path] = field(default_factory=dict)
    #: (model, dataset) -> a judged results file that held scores (``results/{m}_judged-by--{j}/{d}.json``).
    judged_files: dict[Pair, Path] = field(default_factory=dict)
    #: The run wrote some predictions file (inference ran, whatever happened after).
    predicted: bool = False
    pairs: list[Pair] = field(default_factory=list)


class _Builder:
    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout
        self.out = ScoreTable()
        self._disk: dict[Pair, None] = {}  # pairs some task wrote a file for (results, predictions, logs), in order
        self._judged: dict[Pair, tuple[str, str]] = {}  # -> (judge, results folder)
        self._log = get_logger(run_folder=str(layout.folder))

    def note(self, text: str) -> None:
        self.out.notes.append(text)
        self._log.warning("result reader note", note=text[:300])

    def judge(self, name: str | None) -> None:
        if name and name not in self.out.judges:
            self.out.judges.append(name)

    # -- sources ---------------------------------------------------------------------------------------------------
    def read_config(self) -> None:
        try:
            self.out.config_file = self.layout.config_file(self.layout.summary_stamp())
        except OutsideRunError as exc:
            self.note(f"config not read: {exc}")
        self.out.config = read_run_config(self.out.config_file)

    def read_summaries(self, known_models: list[str]) -> None:
        layout = self.layout
        tables = layout.summary_tables()
        with_all = {judge_of(p.name) for p in tables if p.name.startswith(SUBJECTIVE_ALL_PREFIX)}
        chosen = []
        for path in tables:
            judge = judge_of(path.name)
            if not path.name.startswith(SUBJECTIVE_ALL_PREFIX) and judge is not None and judge in with_all:
                continue  # the all-results table of the same judge already has these scores
            chosen.append(path)
        rename = self.out.config.column_of_model
        for path in chosen:
            display = layout.rel(path)
            try:
                summary = read_summary(layout.inside(path), display, known_models)
            except ResultParseError as exc:
                self.note(f"summary not used: {exc}"[:500])
                continue
            except OSError as exc:
                self.note(f"summary not used: {display}: {os_reason(exc)}")
                continue
            if rename:
                summary.models = [rename.get(m, m) for m in summary.models]
                summary.rows = [r.model_copy(update={"model": rename.get(r.model, r.model)}) for r in summary.rows]
            self.out.summaries.append(summary)
            self.out.notes += summary.notes
            self.judge(summary.judge)

    def scan_folders(self, models: list[str], summary_datasets: set[str]) -> None:
        """Pairs from ``results/``, ``predictions/`` and ``logs/``; judged results folders mapped to their model, and
        a model abbr with ``/`` (nested folders) told from a dataset abbr with ``/`` by the known model abbrs."""
        models = list(models) + [m for m in self._folders("predictions") if m not in models]
        predicted = {name for folder in self._folders("predictions") for name in self._files("predictions", folder)}
        self.out.predicted = bool(predicted)
        named = summary_datasets | set(self.out.config.datasets)  # datasets by name, not by a file's name
        known = named | predicted

        def add(name: str, evaluated: str) -> None:
            self._disk.setdefault(_split_nested(evaluated, name, models), None)

        for folder in self._folders("results"):
            model, judge = _evaluated_model(folder, models)
            self.judge(judge)
            names = self._files("results", folder)
            for dataset in names:
                if _is_judge_output(dataset, set(names) | known):
                    continue
                if judge is not None:
                    self._judged[_split_nested(model, dataset, models)] = (judge, folder)
                add(dataset, model)
        known = named | {d for _, d in self._disk}
        for folder in self._folders("predictions"):
            names = self._files("predictions", folder)
            for name in names:
                add(_unshard(name, known, names), folder)
            for name in self._files("predictions", folder, ".jsonl"):
                head, _, tail = name.rpartition("/")
                if tail.startswith("tmp_"):
                    add(f"{head}/{tail[4:]}" if head else tail[4:], folder)
        for stage in ("infer", "eval"):
            for folder in self._folders(f"logs/{stage}"):
                names = self._files(f"logs/{stage}", folder, ".out")
                model, _ = _evaluated_model(folder, models)
                for name in names:
                    if not _is_judge_output(name, set(names) | known):
                        add(_unshard(name, known, names), model)

    def _folders(self, kind: str) -> list[str]:
        names = self.layout.model_folders(kind)
        if any(not_utf8(n) for n in names):
            self.note(f"{kind}/: a folder whose name is not valid UTF-8 was skipped")
        return [n for n in names if not not_utf8(n)]

    def _files(self, kind: str, folder: str, suffix: str = ".json") -> list[str]:
        try:
            names = self.layout.files_of(kind, folder, suffix)
        except OutsideRunError as exc:
            self.note(f"{kind}/{folder} not read: {exc}")
            return []
        if any(not_utf8(n) for n in names):
            self.note(f"{kind}/{folder}: a file whose name is not valid UTF-8 was skipped")
        return [n for n in names if not not_utf8(n)]

    # -- merge -----------------------------------------------------------------------------------------------------
    def merge(self) -> None:
        on_disk = {d for _, d in self._disk}
        disk_models = {m for m, _ in self._disk}
        # The default summarizer writes a ',' inside any cell as a space (names included).
        spaced = {d.replace(",", " "): d for d in on_disk if "," in d}
        spaced_models = {m.replace(",", " "): m for m in disk_models if "," in m}
        config = self.out.config
        # The run's config, when it is this run's (it names a dataset the run wrote files for), lists its datasets:
        # a summary row of any other name with no score is a `dataset_abbrs` placeholder, not a dataset of the run.
        trusted = bool(set(config.datasets) & on_disk)
        cells: dict[Pair, list[MetricRow]] = {}
        skipped: list[str] = []
        for summary in self.out.summaries:
            for row in summary.rows:
                if row.dataset not in on_disk and row.dataset in spaced:
                    row = row.model_copy(update={"dataset": spaced[row.dataset]})
                if row.model not in disk_models and row.model in spaced_models:
                    row = row.model_copy(update={"model": spaced_models[row.model]})
                placeholder = row.score is None and not row.reason and row.dataset not in on_disk
                if trusted and placeholder and row.dataset not in config.datasets and row.dataset not in config.groups:
                    skipped.append(row.dataset)
                    continue
                same = cells.setdefault((row.model, row.dataset), [])
                if not any(c.metric == row.metric and c.judge == row.judge for c in same):  # a table may repeat
                    same.append(row)
        if skipped:
            names = ", ".join(dict.fromkeys(skipped))
            self.note(f"summary rows for datasets this run's config does not have were skipped: {names}"[:500])
        pairs = list(dict.fromkeys([*cells, *self._disk]))
        for model, dataset in pairs:
            if model not in self.out.models:
                self.out.models.append(model)
            if dataset not in self.out.datasets:
                self.out.datasets.append(dataset)
        for pair in pairs:
            group = pair[1] not in on_disk and pair[1] in config.groups
            rows, status = self._pair(pair, cells.get(pair, []), group=group)
            self.out.metrics += rows
            self.out.statuses.append(status)
        self.out.pairs = pairs

    def _pair(self, pair: Pair, cells: list[MetricRow], group: bool) -> tuple[list[MetricRow], DatasetStatus]:
        model, dataset = pair
        try:
            results = self.layout.results_file(model, dataset)
        except OutsideRunError:
            self._log.warning("outputs outside the run folder refused", model=model[:200], dataset=dataset[:200])
            rows = [c.model_copy(update={"score": None}) for c in cells] or [_empty(model, dataset)]
            return rows, DatasetStatus(model=model, dataset=dataset, status="failed", reason=OUTSIDE_REASON)
        found: ResultScores | None = None
        unreadable = None
        judged = self._judged.get(pair)
        judge = None
        if not results.is_file() and judged is not None:  # a judged dataset: its scores (if the judge's
            judge, folder = judged  # post-processor gave any) are in the judged results folder
            results = self.layout.results_file(folder, dataset)
        if results.is_file():
            try:
                found = read_result_scores(results, self.layout.rel(results))
                if judge is None:
                    self.out.results_files[pair] = results
                else:
                    self.out.judged_files[pair] = results
            except ResultParseError as exc:
                unreadable = f"results file unreadable: {exc}"[:500]
            except OSError as exc:
                unreadable = f"results file unreadable: {self.layout.rel(results)}: {os_reason(exc)}"
        rows = _merge_rows(model, dataset, cells, found, self.layout.rel(results), judge)
        finite = [r for r in rows if r.score is not None]
        bad = next((r.reason for r in rows if r.reason), None)
        error = found.error if found is not None else unreadable
        if finite and len(finite) == len(rows) and error is None:  # (a scored row no task wrote files for: a group)
            return rows, DatasetStatus(model=model, dataset=dataset, status="ok")
        if pair in self._judged and not rows and error is None:
            return rows, DatasetStatus(model=model, dataset=dataset, status="ok")
        if finite:
            why = error or bad or self._task_error(model, dataset) or "some metrics have no score"
            return rows, DatasetStatus(model=model, dataset=dataset, status="partial", reason=why)
        if group and found is None:
            why = bad or "a summary group without a score (one of its datasets has none)"
            return rows or [_empty(model, dataset)], DatasetStatus(
                model=model, dataset=dataset, status="missing", reason=why
            )
        reason = error or bad or self._task_error(model, dataset)
        if reason is None and found is None:
            reason = "no results file (the task produced no result)"
        if reason is None:
            return rows or [_empty(model, dataset)], DatasetStatus(model=model, dataset=dataset, status="missing")
        stopped = self._stopped_inference(model, dataset)
        reason = f"{reason}; {stopped}" if stopped else reason
        return rows, DatasetStatus(model=model, dataset=dataset, status="failed", reason=reason)

    def _task_error(self, model: str, dataset: str) -> str | None:
        """The last error line of the task logs; infer first (an infer failure causes the eval one)."""
        for stage in ("infer", "eval"):
            try:
                error = last_error(self.layout.task_logs(stage, model, dataset))
            except OutsideRunError:
                return None
            if error:
                return f"{stage}: {error}"[:500]
        return None

    def _stopped_inference(self, model: str, dataset: str) -> str | None:
        """A leftover ``tmp_{dataset}.jsonl`` says how far an interrupted inference got."""
        try:
            tmp = self.layout.interrupted_checkpoint(model, dataset)
        except OutsideRunError:
            return None
        if tmp is None:
            return None
        with tmp.open("rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        return f"inference stopped after {lines} examples ({self.layout.rel(tmp)})"


def build_table(layout: RunLayout) -> ScoreTable:
    """The run's :class:`ScoreTable`. Never raises for one bad file: that (model, dataset) is failed with a reason,
    or a note says which summary was not used."""
    builder = _Builder(layout)
    builder.read_config()
    on_disk = layout.model_folders("predictions") + [
        m for m in layout.model_folders("results") if JUDGED_BY not in m and META_REVIEWED_BY not in m
    ]
    builder.read_summaries(on_disk)
    summary_models = [m for s in builder.out.summaries for m in s.models]
    summary_datasets = {r.dataset for summary in builder.out.summaries for r in summary.rows}
    builder.scan_folders(list(dict.fromkeys(summary_models + builder.out.config.models)), summary_datasets)
    builder.merge()
    return builder.out


def _merge_rows(
    model: str, dataset: str, cells: list[MetricRow], found: ResultScores | None, source: str, judge: str | None = None
) -> list[MetricRow]:
    if found is None or not found.metrics:
        return list(cells)
    version = next((c.version for c in cells if c.version not in ("", "-")), "-")
    mode = next((c.mode for c in cells if c.mode not in ("", "-")), "-")
    from_file = {name for name, _, _ in found.metrics}
    kept = [c for c in cells if c.metric != NO_METRIC and c.metric not in from_file]
    by_name = {c.metric: c for c in cells}
    rows = [
        MetricRow(
            model=model,
            dataset=dataset,
            metric=name,
            score=score,
            version=by_name[name].version if name in by_name else version,
            mode=by_name[name].mode if name in by_name else mode,
            reason=reason,
            judge=by_name[name].judge if name in by_name else judge,
            source=source,
        )
        for name, score, reason in found.metrics
    ]
    return rows + kept


def _empty(model: str, dataset: str) -> MetricRow:
    return MetricRow(model=model, dataset=dataset, metric=NO_METRIC, score=None, version="-", mode="-")


def _evaluated_model(folder: str, models: list[str]) -> tuple[str, str | None]:
    """(model, judge) of a results/logs folder: a judged one is ``{model}_judged-by--{judge}`` or, pairwise,
    ``{base}_{model}_judged-by--{judge}`` (the longest known model abbr it ends with; a meta review's
    ``_summarized-by--`` likewise); any other is the model."""
    marker = JUDGED_BY if JUDGED_BY in folder else META_REVIEWED_BY if META_REVIEWED_BY in folder else None
    if marker is None:
        return folder, None
    evaluated, judge = folder.split(marker, 1)
    matches = [m for m in models if evaluated == m or evaluated.endswith(f"_{m}")]
    return max(matches, key=len, default=evaluated), judge


def _split_nested(folder: str, name: str, models: list[str]) -> tuple[str, str]:
    """A model abbr with ``/`` writes ``{kind}/{org}/{model}/{dataset}.json``: the file ``{model}/{dataset}`` under
    folder ``{org}`` is model ``{org}/{model}`` when that is a known model abbr (the longest that fits)."""
    fits = [m for m in models if m.startswith(folder + "/") and name.startswith(m[len(folder) + 1 :] + "/")]
    if not fits:
        return folder, name
    model = max(fits, key=len)
    return model, name[len(model) - len(folder) :]


def _is_judge_output(name: str, siblings: Iterable[str]) -> bool:
    """``{d}_replica{r}`` / ``{d}_llm_judge_replica{r}`` beside ``{d}``: an LLM judge's own output file."""
    match = JUDGE_OUTPUT.match(name)
    return match is not None and match.group(1) in set(siblings)


def _unshard(name: str, known: set[str], siblings: Iterable[str]) -> str:
    """``{dataset}_{i}`` of a split dataset (SizePartitioner) -> ``{dataset}``, when ``{dataset}_{i}`` is not itself a
    known dataset and either ``{dataset}`` is one (a summary, the config or a results file names it) or
    ``{dataset}_0`` exists beside it."""
    if name in known:
        return name
    base, _, index = name.rpartition("_")
    if base and index.isdigit() and (base in known or f"{base}_0" in set(siblings)):
        return base
    return name
