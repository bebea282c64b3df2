"""Which datasets a request may name and which suites exist: the one place that turns names into OpenCompass configs.

Three kinds of dataset are known:

- *bundled*: tiny ``.jsonl`` files shipped inside ``budeval/engine/datasets`` (``tiny_qa``, ``tiny_mcq``), rendered by
  the absolute path of the installed package folder, so they work on a laptop and in the runner image alike;
- *stock*: OpenCompass 0.5.4 dataset configs that budeval supports, imported with ``read_base`` (their data must be
  available to OpenCompass, e.g. under ``COMPASS_DATA_CACHE``);
- *custom*: the request's own :class:`CustomDataset` entries (a ``.jsonl`` path).

Suites are declarative YAML files naming datasets of the first two kinds, found on a search path: the bundled
``budeval/engine/suites/`` first, then the operator's folders (setting ``suites_path``); a later folder's suite
replaces an earlier one of the same name. :class:`SuiteCatalog` re-reads them when a file changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from budeval.errors import ValidationError
from budeval.logs import get_logger
from budeval.schemas.ids import DNS_LABEL
from budeval.schemas.request import CustomDataset, EvalRequest
from budeval.schemas.scoring import JUDGE_SCORING, DatasetKind

#: Folder of the bundled ``.jsonl`` datasets inside the installed package.
BUNDLED_DIR = Path(__file__).resolve().parent / "datasets"


@dataclass(frozen=True)
class BundledDataset:
    """A ``.jsonl`` file in :data:`BUNDLED_DIR`; ``scoring`` is fixed here (one of ``SCORINGS[kind]``, see
    budeval/schemas/request.py) and rendered into the config, so changing it changes the config hash."""

    name: str
    kind: DatasetKind
    scoring: str

    @property
    def path(self) -> Path:
        return BUNDLED_DIR / f"{self.name}.jsonl"


@dataclass(frozen=True)
class StockDataset:
    """A stock OpenCompass dataset config: ``from {module} import {variable}`` inside ``read_base()``."""

    name: str
    module: str
    variable: str


BUNDLED: dict[str, BundledDataset] = {
    d.name: d
    for d in (
        BundledDataset("tiny_qa", "qa", scoring="contains"),
        BundledDataset("tiny_mcq", "mcq", scoring="option"),
    )
}

_CFG = "opencompass.configs.datasets"
#: Stock configs budeval supports, each checked to exist in OpenCompass 0.5.4 (see tests/engine/test_catalog.py).
STOCK: dict[str, StockDataset] = {
    d.name: d
    for d in (
        StockDataset("gsm8k_gen", f"{_CFG}.gsm8k.gsm8k_gen", "gsm8k_datasets"),
        StockDataset("math_gen", f"{_CFG}.math.math_gen", "math_datasets"),
        StockDataset("mmlu_gen", f"{_CFG}.mmlu.mmlu_gen", "mmlu_datasets"),
        StockDataset("mmlu_ppl", f"{_CFG}.mmlu.mmlu_ppl", "mmlu_datasets"),
        StockDataset("ceval_gen", f"{_CFG}.ceval.ceval_gen", "ceval_datasets"),
        StockDataset("cmmlu_gen", f"{_CFG}.cmmlu.cmmlu_gen", "cmmlu_datasets"),
        StockDataset("ARC_c_gen", f"{_CFG}.ARC_c.ARC_c_gen", "ARC_c_datasets"),
        StockDataset("ARC_e_gen", f"{_CFG}.ARC_e.ARC_e_gen", "ARC_e_datasets"),
        StockDataset("hellaswag_gen", f"{_CFG}.hellaswag.hellaswag_gen", "hellaswag_datasets"),
        StockDataset("winogrande_gen", f"{_CFG}.winogrande.winogrande_gen", "winogrande_datasets"),
        StockDataset("piqa_gen", f"{_CFG}.piqa.piqa_gen", "piqa_datasets"),
        StockDataset("triviaqa_gen", f"{_CFG}.triviaqa.triviaqa_gen", "triviaqa_datasets"),
        StockDataset("nq_gen", f"{_CFG}.nq.nq_gen", "nq_datasets"),
        StockDataset("bbh_gen", f"{_CFG}.bbh.bbh_gen", "bbh_datasets"),
        StockDataset("humaneval_gen", f"{_CFG}.humaneval.humaneval_gen", "humaneval_datasets"),
        StockDataset("mbpp_gen", f"{_CFG}.mbpp.mbpp_gen", "mbpp_datasets"),
        StockDataset("race_gen", f"{_CFG}.race.race_gen", "race_datasets"),
        StockDataset("gpqa_gen", f"{_CFG}.gpqa.gpqa_gen", "gpqa_datasets"),
        # LLM-judge configs: their GenericLLMEvaluator's judge_cfg is filled from the request's judge (render.py).
        StockDataset("aime2024_llmjudge_gen", f"{_CFG}.aime2024.aime2024_llmjudge_gen_5e9f4f", "aime2024_datasets"),
        StockDataset("math_500_llmjudge_gen", f"{_CFG}.math.math_500_llmjudge_gen_6ff468", "math_datasets"),
        StockDataset("hellaswag_llmjudge_gen", f"{_CFG}.hellaswag.hellaswag_llmjudge_gen_809ef1", "hellaswag_datasets"),
    )
}

#: Per OpenCompass version, what OpenCompass itself says of each stock config (config hash, abbrs, data paths and
#: whether its evaluator takes a judge model), computed in the OpenCompass venv by scripts/stock_config_hashes.py.
STOCK_TABLE = Path(__file__).resolve().parent / "stock_configs.json"

#: Folders of OpenCompass 0.5.4's subjective configs (``configs/datasets/subjective/<folder>``). Not supported: their
#: judge is the eval config's ``judge_models`` with a subjective partitioner and summarizer, and their results are
#: pairwise or rubric tables, not per-example verdicts (docs/opencompass.md "LLM-judge datasets").
SUBJECTIVE = frozenset(
    {
        "alignbench", "alpaca_eval", "arena_hard", "compass_arena_subjective_bench", "compassarena", "compassbench",
        "elbench", "flames", "fofo", "followbench", "hellobench", "judgerbench", "multiround", "mtbench",
        "mtbench101", "wildbench", "writingbench", "subjective",
    }
)


@cache
def _stock_file() -> dict[str, dict[str, dict[str, Any]]]:
    data = json.loads(STOCK_TABLE.read_text(encoding="utf-8"))
    return {str(data["engine_version"]): dict(data["datasets"])}


def stock_table() -> dict[str, dict[str, dict[str, Any]]]:
    """``{engine version: {stock dataset name: {config_hash, abbrs, data_paths, judge}}}`` from
    ``stock_configs.json``."""
    return _stock_file()


def needs_judge(name: str) -> bool:
    """Whether the stock dataset ``name``'s OpenCompass config scores by a judge model (its evaluator has a
    ``judge_cfg``, e.g. ``GenericLLMEvaluator``), as recorded in :data:`STOCK_TABLE` by OpenCompass itself; False
    for names that are not stock."""
    if name not in STOCK:
        return False
    return any(bool(per.get(name, {}).get("judge")) for per in stock_table().values())


def judged_datasets(request: EvalRequest, names: Sequence[str]) -> list[str]:
    """Of the resolved dataset ``names``, those scored by the request's judge: custom datasets scored ``judge`` and
    stock LLM-judge datasets (:func:`needs_judge`), in order."""
    custom = {d.name: d for d in request.datasets or [] if isinstance(d, CustomDataset)}
    return [
        n for n in names
        if (n in custom and custom[n].scoring == JUDGE_SCORING) or (n not in custom and needs_judge(n))
    ]


def _subjective_hint(name: str) -> str:
    """A sentence for an unknown name that looks like one of OpenCompass's subjective datasets, else ''."""
    stem = name.lower().split("_gen")[0].split("_judge")[0]
    if stem in SUBJECTIVE or any(stem.startswith(f"{s}_") for s in SUBJECTIVE) or "subjective" in name.lower():
        return (
            f"{name!r} looks like an OpenCompass subjective dataset: budeval does not run those (their judge is"
            " the eval config's judge_models with a subjective partitioner and summarizer, scoring pairwise or by"
            " rubric rather than per example); see docs/opencompass.md"
        )
    return ""


def known_dataset_names() -> list[str]:
    """Names a request or suite may use without declaring a custom dataset, sorted."""
    return sorted({*BUNDLED, *STOCK})


#: Folder of the suites shipped with budeval (``light``, ``standard``, ``heavy``): the first of the search path.
BUNDLED_SUITES_DIR = Path(__file__).resolve().parent / "suites"


def suite_folders(extra: Sequence[Path] | None = None) -> list[Path]:
    """The search path: :data:`BUNDLED_SUITES_DIR`, then ``extra`` (default: the setting ``suites_path``,
    ``BUDEVAL_SUITES_PATH``); a suite in a later folder replaces one of the same name in an earlier one."""
    if extra is None:
        from budeval.config import Settings

        extra = Settings.from_env().suites_path
    return [BUNDLED_SUITES_DIR, *extra]


class SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=DNS_LABEL.pattern, min_length=1, max_length=63)]
    description: str = ""
    datasets: Annotated[list[str], Field(min_length=1, max_length=200)]


@dataclass(frozen=True)
class Suite:
    """One loaded suite: its datasets in order, its description and the file it came from."""

    name: str
    datasets: list[str]
    description: str
    source: Path


def read_suites(folders: Sequence[Path]) -> dict[str, Suite]:
    """Suites from ``*.yaml`` in each folder, in order; later folders replace earlier suites of the same name.

    A broken file is an error naming the file (and line for YAML syntax); so is a suite naming an unknown dataset,
    a name defined twice in one folder, or a folder that does not exist."""
    suites: dict[str, Suite] = {}
    known = set(known_dataset_names())
    for folder in folders:
        if not folder.is_dir():
            raise ValidationError(f"suites folder {folder} does not exist", field="suite")
        here: dict[str, Path] = {}
        for file in sorted(folder.glob("*.yaml")):
            suite = _read_suite(file)
            if suite.name in here:
                raise ValidationError(
                    f"{file}: suite {suite.name!r} already defined in {here[suite.name]}", field="suite"
                )
            unknown = [d for d in suite.datasets if d not in known]
            if unknown:
                hint = _subjective_hint(unknown[0])
                raise ValidationError(f"{file}: {hint}" if hint else f"{file}: unknown datasets {unknown}",
                                      field="suite")
            if len(set(suite.datasets)) != len(suite.datasets):
                raise ValidationError(f"{file}: datasets listed twice", field="suite")
            here[suite.name] = file
            suites[suite.name] = Suite(suite.name, list(suite.datasets), suite.description, file)
    return suites


def load_suites(path: Path | Sequence[Path] | None = None) -> dict[str, list[str]]:
    """Suites of the search path, name -> dataset names: the bundled ones, then ``path`` (one operator folder or
    several; default: the setting ``suites_path``). Errors: :func:`read_suites`'s."""
    extra = [path] if isinstance(path, Path) else path
    return {name: s.datasets for name, s in read_suites(suite_folders(extra)).items()}


class SuiteCatalog(Mapping[str, list[str]]):
    """The suites of a search path, re-read when a suite file or folder changes (checked at each lookup by the files'
    modification times and sizes), so a service sees a new or edited suite without a restart.

    Built with :func:`read_suites`'s errors (a broken search path stops a service from starting); a broken file met
    at a later re-read keeps the suites read before and is reported by :attr:`error` and a warning log line."""

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = list(folders)
        self._stamp = self._signature()
        self._suites = read_suites(self.folders)
        self.error: str | None = None

    def _signature(self) -> tuple[tuple[str, int, int], ...]:
        marks: list[tuple[str, int, int]] = []
        for folder in self.folders:
            try:
                entries = [folder, *sorted(folder.glob("*.yaml"))]
                for path in entries:
                    st = path.stat()
                    marks.append((str(path), st.st_mtime_ns, st.st_size))
            except OSError:
                marks.append((str(folder), -1, -1))
        return tuple(marks)

    def refresh(self) -> None:
        """Re-read the folders if anything in them changed since the last read."""
        stamp = self._signature()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._suites = read_suites(self.folders)
            self.error = None
        except ValidationError as exc:
            self.error = exc.message
            get_logger(component="suites").warning("suites not reloaded; the earlier ones stay", error=exc.message)

    @property
    def suites(self) -> dict[str, Suite]:
        """The current suites with their descriptions and source files."""
        self.refresh()
        return dict(self._suites)

    def __getitem__(self, name: str) -> list[str]:
        self.refresh()
        return list(self._suites[name].datasets)

    def __iter__(self) -> Iterator[str]:
        self.refresh()
        return iter(list(self._suites))

    def __len__(self) -> int:
        self.refresh()
        return len(self._suites)


def _read_suite(file: Path) -> SuiteFile:
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        raise ValidationError(f"{where}: invalid YAML: {exc.problem}", field="suite") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValidationError(f"{file}: cannot read: {exc}", field="suite") from None
    try:
        return SuiteFile.model_validate(raw)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ValidationError(f"{file}: {loc}: {first['msg']}", field="suite") from None


def resolve_datasets(request: EvalRequest, suites: Mapping[str, list[str]]) -> list[str]:
    """The dataset names the request evaluates, in order: the suite's datasets or the request's own list.

    ValidationError for an unknown suite or dataset, for a stock LLM-judge dataset (:func:`needs_judge`) in a
    request without a ``judge`` (field ``judge``, naming the datasets: it is never run with an empty judge), and for
    a ``judge`` that scores no dataset (field ``judge``)."""
    names = _resolve_names(request, suites)
    if request.judge is not None and not judged_datasets(request, names):
        raise ValidationError(
            "'judge' is given but no dataset is scored 'judge' (a custom qa dataset with \"scoring\": \"judge\" or"
            " a stock LLM-judge dataset such as math_500_llmjudge_gen): drop 'judge', or mark the datasets it"
            " should score",
            field="judge",
        )
    if request.judge is None:
        stock_judged = [n for n in judged_datasets(request, names) if n in STOCK]
        if stock_judged:
            raise ValidationError(
                f"dataset(s) {', '.join(stock_judged)} are scored by an LLM judge (OpenCompass's"
                " GenericLLMEvaluator): give a 'judge' model",
                field="judge",
            )
    return names


def _resolve_names(request: EvalRequest, suites: Mapping[str, list[str]]) -> list[str]:
    if request.suite is not None:
        if request.suite not in suites:
            known = ", ".join(sorted(suites)) or "none"
            raise ValidationError(f"unknown suite {request.suite!r} (known: {known})", field="suite")
        names = list(suites[request.suite])
        unknown = [n for n in names if n not in BUNDLED and n not in STOCK]
        if unknown:
            raise ValidationError(f"suite {request.suite!r} names unknown datasets {unknown}", field="suite")
        return names
    names = []
    for ref in request.datasets or []:
        if isinstance(ref, str):
            if ref not in BUNDLED and ref not in STOCK:
                hint = _subjective_hint(ref)
                raise ValidationError(
                    hint or f"unknown dataset {ref!r}: use a bundled or stock name ({', '.join(known_dataset_names())})"
                    " or declare a custom dataset with name and path",
                    field="datasets",
                )
            names.append(ref)
        else:
            names.append(ref.name)
    return names
