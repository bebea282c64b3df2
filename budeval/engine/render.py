"""Renders an evaluation request into an OpenCompass 0.5.4 Python config: the only text a runner executes.

Pure and deterministic: the same request and datasets give the same text byte for byte, so :func:`config_hash` is
provenance (what exactly was run) and a cache key. Decisions (see docs/opencompass.md):

- every literal is written with ``repr`` (a valid Python literal), never by string pasting, so no request value
  can inject code into the config;
- the model ``abbr`` is the request's model name: OpenCompass names output folders and summary columns after it;
- Hugging Face models use ``HuggingFacewithChatTemplate`` (mode ``chat``) or ``HuggingFaceBaseModel`` (``base``),
  with ``trust_remote_code=False`` (a request must not run code shipped with a model);
- endpoint models use budeval's ``BudevalOpenAISDK`` (OpenCompass's ``OpenAISDK`` that also records each
  request's token usage, ``opencompass_plugin/budeval_usage.py``, embedded like the scoring module) with
  ``key='ENV'``: OpenCompass reads ``OPENAI_API_KEY`` from the run's environment, which the backend fills from the
  referenced secret. The key never appears in the text. How it calls the endpoint (rate, parallel requests,
  retries, timeout) is ``render_models.EndpointCalls``: the request's endpoint source over the operator's settings;
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
  ``judge_cfg`` (rendered like an evaluated model, its key by ``key='ENV'`` too; an endpoint judge is plain
  ``OpenAISDK``, so the run's recorded usage stays the evaluated model's), the judge prompt
  (budeval/engine/judging.py) and budeval's ``budeval_judge_postprocess`` (verdict letter -> ``correct``, the raw
  answer kept as ``judge_answer``);
- a stock LLM-judge dataset (catalog.py ``needs_judge``: OpenCompass's config has an evaluator with a
  ``judge_cfg``, e.g. ``GenericLLMEvaluator``) is imported as any stock config and passed through the plugin's
  ``budeval_with_judge`` (``opencompass_plugin/budeval_judged.py``), which sets every ``judge_cfg`` of its
  ``eval_cfg`` to the same judge model dict; the config's own grader prompt and post-processor stay;
- a re-judging request (``rejudge_of``) replaces the evaluated model by ``BudevalReplay`` (the plugin's model
  class, same ``abbr``), which answers each prompt with the prediction stored for it by the earlier evaluation
  (``replay``: prompt text as stored -> predictions in example order): the evaluated model is never called.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

from budeval.config import Settings
from budeval.engine.catalog import BUNDLED, STOCK, needs_judge
from budeval.engine.judging import template_of
from budeval.engine.render_models import ENDPOINT_MODEL, REPLAY_MODEL, Replay, literal, model_dict, replay_model
from budeval.errors import ValidationError
from budeval.schemas.request import CustomDataset, EvalRequest, JudgeSpec
from budeval.schemas.scoring import JUDGE_SCORING, split_scoring

#: Environment variable OpenCompass's OpenAI models read when ``key='ENV'``.
API_KEY_ENV = "OPENAI_API_KEY"


#: Code OpenCompass runs for budeval (stdlib + OpenCompass imports only); budeval itself never imports it.
PLUGIN_DIR = Path(__file__).resolve().parent / "opencompass_plugin"
#: The scoring module (a file of :data:`PLUGIN_DIR`, written under this name next to the run) and its evaluator.
SCORING_MODULE = "budeval_scoring"
EVALUATOR = "BudevalEvaluator"
#: The plugin's judge post-processor and replay model (budeval_scoring.py).
JUDGE_POSTPROCESS = "budeval_judge_postprocess"
#: The judge model's dict, defined once in the config and referenced by each judged dataset.
JUDGE_VARIABLE = "_budeval_judge"
SCORING_SOURCE = PLUGIN_DIR / f"{SCORING_MODULE}.py"
#: The usage-recording endpoint model (a file of :data:`PLUGIN_DIR`) and its class.
USAGE_MODULE = "budeval_usage"
#: The module and function that put the judge into stock LLM-judge dataset configs (a file of :data:`PLUGIN_DIR`).
JUDGED_MODULE = "budeval_judged"
WITH_JUDGE = "budeval_with_judge"


@functools.cache
def scoring_source() -> str:
    """The scoring module's source text, as embedded in rendered configs."""
    return SCORING_SOURCE.read_text(encoding="utf-8")


@functools.cache
def judged_source() -> str:
    """The module that fills stock LLM-judge configs' ``judge_cfg``, as embedded in configs that have them."""
    return (PLUGIN_DIR / f"{JUDGED_MODULE}.py").read_text(encoding="utf-8")


@functools.cache
def usage_source() -> str:
    """The usage-recording model's source text, as embedded in the configs of endpoint models."""
    return (PLUGIN_DIR / f"{USAGE_MODULE}.py").read_text(encoding="utf-8")


def config_hash(text: str) -> str:
    """sha256 hex of the rendered config text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def render_config(
    request: EvalRequest,
    datasets: Sequence[str | CustomDataset],
    settings: Settings | None = None,
    replay: Replay | None = None,
) -> str:
    """The OpenCompass config for ``request``'s model over ``datasets`` (names or the request's custom datasets).

    ``settings``: the operator's defaults for endpoint models (``render_models.EndpointCalls``; None: built-in).
    ``replay``: for a request with ``rejudge_of``, the earlier evaluation's stored predictions (see :data:`Replay`);
    ValidationError when such a request comes without them.
    """
    if not datasets:
        raise ValidationError("no datasets to render", field="datasets")
    if request.rejudge_of is not None and replay is None:
        raise ValidationError(f"re-judging {request.rejudge_of!r} needs its stored predictions", field="rejudge_of")
    judged = False  # a custom dataset scored 'judge'
    stock_judged = False  # a stock LLM-judge dataset (catalog.needs_judge)
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
            if needs_judge(ref):
                if request.judge is None:
                    raise ValidationError(f"dataset {ref!r} is scored by an LLM judge but the request names no judge",
                                          field="judge")
                stock_judged = True
                # Called through __import__: with read_base, mmengine imports lazily and a lazily imported
                # function cannot be called while the config loads.
                call = f"__import__({JUDGED_MODULE!r}).{WITH_JUDGE}({alias}, {JUDGE_VARIABLE})"
                dataset_lines.append(f"    *{call},  # {stock.name}, judged")
            else:
                dataset_lines.append(f"    *{alias},  # {stock.name}")
        else:
            raise ValidationError(f"unknown dataset {ref!r}", field="datasets")

    source = request.model.source
    gpus = request.resources.gpus
    if replay is not None:
        model_class, model_lines = REPLAY_MODEL, replay_model(request, replay)
    else:
        model_class, model_lines = model_dict(request.model.name, source, request.generation, gpus, "    ",
                                               settings)
    model_classes = [] if replay is not None else [model_class]
    judge_lines: list[str] = []
    if (judged or stock_judged) and request.judge is not None:
        # An HF judge loads weights in OpenCompass's eval task, which is given its ``num_gpus``: the run's GPUs.
        judge_class, judge_lines = model_dict(request.judge.model.name, request.judge.model.source, request.judge,
                                               gpus, "", settings, judge=True)
        model_classes.append(judge_class)
    out = [
        "# OpenCompass 0.5.4 config rendered by budeval; do not edit: budeval records the sha256 of this text.",
        f"# evaluation {request.eval_id!r}, model {request.model.name!r}. No secret is written here.",
    ]
    if stock_imports:
        out += ["from mmengine.config import read_base", "", "with read_base():", *stock_imports, ""]
    stock_classes = sorted({c for c in model_classes if c != ENDPOINT_MODEL})
    if stock_classes:
        out += [f"from opencompass.models import {', '.join(stock_classes)}", ""]
    if judged:
        out += [
            "from opencompass.datasets.custom import CustomDataset as _budeval_CustomDataset",
            "from opencompass.evaluator import GenericLLMEvaluator",
            "from opencompass.openicl.icl_prompt_template import PromptTemplate as _budeval_PromptTemplate",
            "",
        ]
    scoring = replay is not None or any(not line.lstrip().startswith("*") for line in dataset_lines)
    imported = [EVALUATOR] + ([JUDGE_POSTPROCESS] if judged else []) + ([REPLAY_MODEL] if replay is not None else [])
    modules = (
        ([(SCORING_MODULE, scoring_source(), imported)] if scoring else [])
        + ([(USAGE_MODULE, usage_source(), [ENDPOINT_MODEL])] if ENDPOINT_MODEL in model_classes else [])
        + ([(JUDGED_MODULE, judged_source(), [])] if stock_judged else [])
    )
    if modules:
        out += _plugin_lines(modules)
    if bundled_files:
        out += _bundled_lines(bundled_files)
    if judge_lines:
        out += ["# The judge model (request.judge): OpenCompass's GenericLLMEvaluator builds it in the eval task.",
                f"{JUDGE_VARIABLE} = {judge_lines[0]}", *judge_lines[1:-1], judge_lines[-1].rstrip(","), ""]
    out += ["models = [", *model_lines, "]", ""]
    out += ["datasets = [", *dataset_lines, "]", ""]
    return "\n".join(out)


def _plugin_lines(modules: list[tuple[str, str, list[str]]]) -> list[str]:
    """Write budeval's plugin modules (name, source, the names imported from it) next to this process, import them
    here and in OpenCompass's task processes.

    Statements only through ``__import__(...)`` expressions: a module bound to a name would become a config value,
    which OpenCompass cannot dump. The folder is a fresh ``mkdtemp`` per OpenCompass process (no races), removed
    when that process exits (its task processes have ended by then).
    """
    env = "__import__('os').environ"
    what = "scoring code" if len(modules) == 1 and modules[0][0] == SCORING_MODULE else "code"
    names = ", ".join(f"{name}.py" for name, _, _ in modules)
    lines = [
        f"# budeval's {what} (budeval/engine/opencompass_plugin/{names}; budeval is not installed",
        "# here): written to a fresh folder that this process and its task processes (PYTHONPATH) import it from.",
    ]
    for name, source, _ in modules:
        lines.append(f"_{name}_source = {source!r}")
    lines += [
        "_budeval_plugin = __import__('tempfile').mkdtemp(prefix='budeval-scoring-')",
        "__import__('atexit').register(__import__('shutil').rmtree, _budeval_plugin, True)",
    ]
    for name, _, _ in modules:
        lines.append(
            f"__import__('pathlib').Path(_budeval_plugin, {name + '.py'!r})"
            f".write_text(_{name}_source, encoding='utf-8')"
        )
    lines += [
        "__import__('sys').path.insert(0, _budeval_plugin)",
        f"{env}['PYTHONPATH'] = __import__('os').pathsep.join("
        f"filter(None, [_budeval_plugin, {env}.get('PYTHONPATH')]))",
        *(f"from {name} import {', '.join(imported)}" for name, _, imported in modules if imported),
        "",
    ]
    return lines


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
        f" evaluator={EVALUATOR}, evaluator_kwargs={literal(kwargs)}),"
    )


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


