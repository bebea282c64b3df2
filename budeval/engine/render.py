"""Renders an evaluation request into an OpenCompass 0.5.4 Python config: the only text a runner executes.

Pure and deterministic: the same request and datasets give the same text byte for byte, so :func:`config_hash` is
provenance (what exactly was run) and a cache key. Decisions (see docs/opencompass.md):

- every literal is written with ``repr`` (a valid Python literal), never by string pasting, so no request value
  can inject code into the config;
- the model ``abbr`` is the request's model name: OpenCompass names output folders and summary columns after it;
- Hugging Face models use ``HuggingFacewithChatTemplate`` (mode ``chat``) or ``HuggingFaceBaseModel`` (``base``),
  with ``trust_remote_code=False`` (a request must not run code shipped with a model);
- endpoint models use ``OpenAISDK`` with ``key='ENV'``: OpenCompass reads ``OPENAI_API_KEY`` from the run's
  environment, which the backend fills from the referenced secret. The key never appears in the text;
- custom datasets are referenced by their path; bundled datasets travel inside the config (budeval is not
  installed where OpenCompass runs, e.g. in the runner image of a Kubernetes Job, so a path into the service's
  site-packages would not exist there): their ``.jsonl`` text is a string literal, written at config load to the
  same fresh folder as the scoring module and referenced there. Both are OpenCompass custom datasets (``abbr``,
  ``path``, ``data_type``), completed by OpenCompass itself, with budeval's evaluator and the dataset's scoring
  (``evaluator``, ``evaluator_kwargs``). The config carries the evaluator's source (:data:`SCORING_SOURCE`) as a
  string literal too, writes it to a fresh temporary folder and puts that folder on ``sys.path`` and ``PYTHONPATH``
  (OpenCompass's evaluation tasks are child processes); the config hash therefore covers the exact scoring code
  and the bundled data;
- stock datasets are imported inside ``read_base()`` under an alias per dataset, so that two stock configs exporting
  the same variable name (``mmlu_gen``/``mmlu_ppl``) do not collide;
- a custom dataset scored ``judge`` gets OpenCompass's ``GenericLLMEvaluator`` with the request's judge model as
  ``judge_cfg`` (rendered like an evaluated model, its key by ``key='ENV'`` too), the judge prompt
  (budeval/engine/judging.py) and budeval's ``budeval_judge_postprocess`` (verdict letter -> ``correct``, the raw
  answer kept as ``judge_answer``);
- a re-judging request (``rejudge_of``) replaces the evaluated model by ``BudevalReplay`` (the plugin's model
  class, same ``abbr``), which answers each prompt with the prediction stored for it by the earlier evaluation
  (``replay``: prompt text as stored -> predictions in example order): the evaluated model is never called.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from budeval.engine.catalog import BUNDLED, STOCK
from budeval.engine.judging import template_of
from budeval.errors import ValidationError
from budeval.schemas.request import (
    JUDGE_SCORING,
    CustomDataset,
    EndpointModel,
    EvalRequest,
    HuggingFaceModel,
    JudgeSpec,
    split_scoring,
)

#: Environment variable OpenCompass's OpenAI models read when ``key='ENV'``.
API_KEY_ENV = "OPENAI_API_KEY"


#: Code OpenCompass runs for budeval (stdlib + OpenCompass imports only); budeval itself never imports it.
PLUGIN_DIR = Path(__file__).resolve().parent / "opencompass_plugin"
#: The scoring module (a file of :data:`PLUGIN_DIR`, written under this name next to the run) and its evaluator.
SCORING_MODULE = "budeval_scoring"
EVALUATOR = "BudevalEvaluator"
#: The plugin's judge post-processor and replay model (budeval_scoring.py).
JUDGE_POSTPROCESS = "budeval_judge_postprocess"
REPLAY_MODEL = "BudevalReplay"
#: The judge model's dict, defined once in the config and referenced by each judged dataset.
JUDGE_VARIABLE = "_budeval_judge"
#: Prompt texts as stored (``ROLE: text`` lines) -> the stored predictions for that prompt, in example order.
Replay = dict[str, list[str]]
SCORING_SOURCE = PLUGIN_DIR / f"{SCORING_MODULE}.py"


@functools.cache
def scoring_source() -> str:
    """The scoring module's source text, as embedded in rendered configs."""
    return SCORING_SOURCE.read_text(encoding="utf-8")


def config_hash(text: str) -> str:
    """sha256 hex of the rendered config text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def render_config(
    request: EvalRequest, datasets: Sequence[str | CustomDataset], replay: Replay | None = None
) -> str:
    """The OpenCompass config for ``request``'s model over ``datasets`` (names or the request's custom datasets).

    ``replay``: for a request with ``rejudge_of``, the earlier evaluation's stored predictions (see :data:`Replay`);
    ValidationError when such a request comes without them.
    """
    if not datasets:
        raise ValidationError("no datasets to render", field="datasets")
    if request.rejudge_of is not None and replay is None:
        raise ValidationError(f"re-judging {request.rejudge_of!r} needs its stored predictions", field="rejudge_of")
    judged = False
    stock_imports: list[str] = []
    dataset_lines: list[str] = []
    seen: set[str] = set()
    stock_variables: list[tuple[str, str]] = []
    bundled_files: dict[str, str] = {}
    for ref in datasets:
        name = ref if isinstance(ref, str) else ref.name
        if name in seen:
            raise ValidationError(f"dataset {name!r} listed twice", field="datasets")
        seen.add(name)
        if isinstance(ref, CustomDataset) and ref.scoring == JUDGE_SCORING:
            if request.judge is None:
                raise ValidationError(f"dataset {name!r} is scored 'judge' but the request names no judge",
                                      field="judge")
            dataset_lines.append(_judged_dataset(ref, request.judge))
            judged = True
        elif isinstance(ref, CustomDataset):
            dataset_lines.append(_custom_dataset(ref.name, ref.path, ref.kind, ref.scoring))
        elif ref in BUNDLED:
            bundled = BUNDLED[ref]
            bundled_files[f"{bundled.name}.jsonl"] = bundled.path.read_text(encoding="utf-8")
            dataset_lines.append(
                _custom_dataset(bundled.name, f"{bundled.name}.jsonl", bundled.kind, bundled.scoring, in_plugin=True)
            )
        elif ref in STOCK:
            stock = STOCK[ref]
            clash = [s for s in stock_variables if s[1] == stock.variable]
            if clash:
                # Variants of one benchmark (mmlu_gen/mmlu_ppl) carry the same dataset abbrs: outputs would collide.
                raise ValidationError(
                    f"{clash[0][0]!r} and {ref!r} are variants of one benchmark; evaluate them in separate runs",
                    field="datasets",
                )
            stock_variables.append((ref, stock.variable))
            alias = f"_stock_{len(stock_imports)}"
            stock_imports.append(f"    from {stock.module} import {stock.variable} as {alias}")
            dataset_lines.append(f"    *{alias},  # {stock.name}")
        else:
            raise ValidationError(f"unknown dataset {ref!r}", field="datasets")

    source = request.model.source
    gpus = request.resources.gpus
    if replay is not None:
        model_class, model_lines = REPLAY_MODEL, _replay_model(request, replay)
    else:
        model_class, model_lines = _model_dict(request.model.name, source, request.generation, gpus, "    ")
    model_classes = [] if replay is not None else [model_class]
    judge_lines: list[str] = []
    if judged and request.judge is not None:
        judge_class, judge_lines = _model_dict(request.judge.model.name, request.judge.model.source, request.judge,
                                               0, "")
        model_classes.append(judge_class)
    out = [
        "# OpenCompass 0.5.4 config rendered by budeval; do not edit: budeval records the sha256 of this text.",
        f"# evaluation {request.eval_id!r}, model {request.model.name!r}. No secret is written here.",
    ]
    if stock_imports:
        out += ["from mmengine.config import read_base", "", "with read_base():", *stock_imports, ""]
    if model_classes:
        out += [f"from opencompass.models import {', '.join(sorted(set(model_classes)))}", ""]
    if judged:
        out += [
            "from opencompass.datasets.custom import CustomDataset as _budeval_CustomDataset",
            "from opencompass.evaluator import GenericLLMEvaluator",
            "from opencompass.openicl.icl_prompt_template import PromptTemplate as _budeval_PromptTemplate",
            "",
        ]
    if replay is not None or any(not line.lstrip().startswith("*") for line in dataset_lines):
        out += _plugin_lines(judged=judged, replay=replay is not None)
    if bundled_files:
        out += _bundled_lines(bundled_files)
    if judge_lines:
        out += ["# The judge model (request.judge): OpenCompass's GenericLLMEvaluator builds it in the eval task.",
                f"{JUDGE_VARIABLE} = {judge_lines[0]}", *judge_lines[1:-1], judge_lines[-1].rstrip(","), ""]
    out += ["models = [", *model_lines, "]", ""]
    out += ["datasets = [", *dataset_lines, "]", ""]
    return "\n".join(out)


def _plugin_lines(*, judged: bool = False, replay: bool = False) -> list[str]:
    """Write budeval's scoring module next to this process, import it here and in OpenCompass's task processes.

    Statements only through ``__import__(...)`` expressions: a module bound to a name would become a config value,
    which OpenCompass cannot dump. The folder is a fresh ``mkdtemp`` per OpenCompass process (no races), removed
    when that process exits (its task processes have ended by then).
    """
    env = "__import__('os').environ"
    return [
        f"# budeval's scoring code (budeval/engine/opencompass_plugin/{SCORING_MODULE}.py; budeval is not installed",
        "# here): written to a fresh folder that this process and its task processes (PYTHONPATH) import it from.",
        f"_budeval_scoring_source = {scoring_source()!r}",
        "_budeval_plugin = __import__('tempfile').mkdtemp(prefix='budeval-scoring-')",
        "__import__('atexit').register(__import__('shutil').rmtree, _budeval_plugin, True)",
        f"__import__('pathlib').Path(_budeval_plugin, {SCORING_MODULE + '.py'!r})"
        ".write_text(_budeval_scoring_source, encoding='utf-8')",
        "__import__('sys').path.insert(0, _budeval_plugin)",
        f"{env}['PYTHONPATH'] = __import__('os').pathsep.join("
        f"filter(None, [_budeval_plugin, {env}.get('PYTHONPATH')]))",
        f"from {SCORING_MODULE} import "
        + ", ".join([EVALUATOR] + ([JUDGE_POSTPROCESS] if judged else []) + ([REPLAY_MODEL] if replay else [])),
        "",
    ]


def _bundled_lines(files: dict[str, str]) -> list[str]:
    """Write the bundled datasets' text (file name -> ``.jsonl`` text) into the plugin folder at config load."""
    return [
        "# budeval's bundled datasets (budeval/engine/datasets), written next to the scoring module.",
        "_budeval_bundled = {" + ", ".join(f"{k!r}: {v!r}" for k, v in sorted(files.items())) + "}",
        "[__import__('pathlib').Path(_budeval_plugin, _n).write_text(_t, encoding='utf-8')"
        " for _n, _t in _budeval_bundled.items()]",
        "",
    ]


def _custom_dataset(abbr: str, path: str, kind: str, scoring: str, *, in_plugin: bool = False) -> str:
    """One dataset entry; ``in_plugin``: ``path`` is a file name in the config's plugin folder (bundled data)."""
    name, pattern = split_scoring(scoring)
    kwargs: dict[str, object] = {"scoring": name}
    if pattern is not None:
        kwargs["pattern"] = pattern
    path_expr = f"__import__('os').path.join(_budeval_plugin, {path!r})" if in_plugin else repr(path)
    return (
        f"    dict(abbr={abbr!r}, path={path_expr}, data_type={kind!r}, infer_method='gen',"
        f" evaluator={EVALUATOR}, evaluator_kwargs={_literal(kwargs)}),"
    )


class _Generation(Protocol):
    """The generation settings a rendered model takes: the request's ``generation`` or its ``judge``."""

    @property
    def max_out_len(self) -> int: ...
    @property
    def max_seq_len(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def temperature(self) -> float: ...


def _model_dict(
    name: str, source: HuggingFaceModel | EndpointModel, gen: _Generation, gpus: int, indent: str
) -> tuple[str, list[str]]:
    """(OpenCompass model class, the lines of its ``dict(...)``, indented by ``indent``)."""
    cls, lines = _hf_model(name, source, gen, gpus) if isinstance(source, HuggingFaceModel) else _endpoint_model(
        name, source, gen
    )
    return cls, [indent + line for line in lines]


def _judged_dataset(ref: CustomDataset, judge: JudgeSpec) -> str:
    """A custom QA dataset scored by the judge: OpenCompass's GenericLLMEvaluator over the same dataset file."""
    prompt_template = (
        f"dict(type=_budeval_PromptTemplate, template=dict(round=[dict(role='HUMAN', prompt={template_of(judge)!r})]))"
    )
    dataset_cfg = (
        f"dict(type=_budeval_CustomDataset, path={ref.path!r},"
        " reader_cfg=dict(input_columns=['question'], output_column='answer'))"
    )
    kwargs = (
        f"dict(dataset_cfg={dataset_cfg}, dict_postprocessor=dict(type={JUDGE_POSTPROCESS}),"
        f" judge_cfg={JUDGE_VARIABLE}, prompt_template={prompt_template})"
    )
    return (
        f"    dict(abbr={ref.name!r}, path={ref.path!r}, data_type={ref.kind!r}, infer_method='gen',"
        f" evaluator=GenericLLMEvaluator, evaluator_kwargs={kwargs}),"
    )


def _replay_model(request: EvalRequest, replay: Replay) -> list[str]:
    """The evaluated model's stand-in for a re-judging run: the stored predictions, keyed by prompt text."""
    gen = request.generation
    return [
        "    dict(",
        f"        type={REPLAY_MODEL},",
        f"        abbr={request.model.name!r},",
        f"        path={'replay:' + str(request.rejudge_of)!r},",
        f"        answers={dict(sorted(replay.items()))!r},",
        "        meta_template=dict(round=[dict(role='HUMAN', api_role='HUMAN'),"
        " dict(role='BOT', api_role='BOT', generate=True)]),",
        f"        max_out_len={gen.max_out_len!r},",
        f"        max_seq_len={gen.max_seq_len!r},",
        f"        batch_size={gen.batch_size!r},",
        "        run_cfg=dict(num_gpus=0),",
        "    ),",
    ]


def _hf_model(name: str, source: HuggingFaceModel, gen: _Generation, gpus: int) -> tuple[str, list[str]]:
    cls = "HuggingFacewithChatTemplate" if source.mode == "chat" else "HuggingFaceBaseModel"
    model_kwargs: dict[str, object] = {"trust_remote_code": False}
    tokenizer_kwargs: dict[str, object] = {"trust_remote_code": False}
    tokenizer = source.separate_tokenizer  # None: the model's own tokenizer (also when spelled as its path)
    if source.revision is not None:
        model_kwargs["revision"] = source.revision
        if tokenizer is None:
            tokenizer_kwargs["revision"] = source.revision
    if gen.temperature > 0:
        generation_kwargs: dict[str, object] = {"do_sample": True, "temperature": gen.temperature}
    else:
        generation_kwargs = {"do_sample": False}
    lines = [
        "dict(",
        f"    type={cls},",
        f"    abbr={name!r},",
        f"    path={source.path!r},",
        f"    tokenizer_path={(tokenizer or source.path)!r},",
        f"    model_kwargs={_literal(model_kwargs)},",
        f"    tokenizer_kwargs={_literal(tokenizer_kwargs)},",
        f"    generation_kwargs={_literal(generation_kwargs)},",
        f"    max_out_len={gen.max_out_len!r},",
        f"    max_seq_len={gen.max_seq_len!r},",
        f"    batch_size={gen.batch_size!r},",
        f"    run_cfg=dict(num_gpus={gpus!r}),",
        "),",
    ]
    return cls, lines


def _endpoint_model(name: str, source: EndpointModel, gen: _Generation) -> tuple[str, list[str]]:
    # 'ENV' makes OpenCompass read OPENAI_API_KEY at run time; 'EMPTY' is the usual placeholder of keyless servers.
    key = "ENV" if source.api_key_secret is not None else "EMPTY"
    lines = [
        "dict(",
        "    type=OpenAISDK,",
        f"    abbr={name!r},",
        f"    path={source.model!r},",
        f"    openai_api_base={source.base_url!r},",
        f"    key={key!r},",
        *([f"    tokenizer_path={source.tokenizer_path!r},"] if source.tokenizer_path else []),
        "    meta_template=dict(round=[dict(role='HUMAN', api_role='HUMAN'),"
        " dict(role='BOT', api_role='BOT', generate=True)]),",
        "    query_per_second=4,",
        "    retry=2,",
        f"    temperature={gen.temperature!r},",
        f"    max_out_len={gen.max_out_len!r},",
        f"    max_seq_len={gen.max_seq_len!r},",
        f"    batch_size={gen.batch_size!r},",
        "    run_cfg=dict(num_gpus=0),",
        "),",
    ]
    return "OpenAISDK", lines


def _literal(values: dict[str, object]) -> str:
    """``dict(k=v, ...)`` with keys in a fixed order and values as Python literals."""
    return "dict(" + ", ".join(f"{k}={v!r}" for k, v in sorted(values.items())) + ")"
