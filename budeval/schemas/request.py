"""The evaluation request: what arrives on the request topic or ``POST /evals``.

Contract (DESIGN.md): ``eval_id`` is a DNS label; the model is a Hugging Face path/hub id with a revision or an
OpenAI-compatible endpoint whose API key is only a *reference* to a Kubernetes Secret; datasets are OpenCompass
dataset config names (or custom ``.jsonl`` datasets), or a named suite. Unknown fields are rejected so that a typo
never silently changes an evaluation.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from budeval.schemas.ids import DNS_LABEL
from budeval.schemas.scoring import JUDGE_SCORING, SCORINGS, DatasetKind, check_scoring

DnsLabel = Annotated[str, Field(pattern=DNS_LABEL.pattern, min_length=1, max_length=63)]
#: Dataset and model abbreviations become file names in OpenCompass's output: keep them path-safe.
SafeName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")]


#: What mmengine's ``Config.fromfile`` rewrites in a config's *text* before running it -- OpenCompass loads the
#: rendered config, and again the per-task copies it dumps, this way (mmengine/config/config.py
#: ``_substitute_env_variables``, ``_substitute_predefined_vars``, ``_pre_substitute_base_vars``): ``{{$VAR:default}}``
#: becomes the environment variable ``VAR`` (the run's ``OPENAI_API_KEY``; its value is also logged),
#: ``{{ fileDirname }}`` and its siblings the config's path, ``{{_base_.x}}`` a base config's value. A superset of
#: those patterns: request text holding one is refused (:func:`check_config_text`).
CONFIG_SUBSTITUTION = re.compile(
    r"\{\{['\"]?\s*\$\w+\s*:"
    r"|\{\{\s*(fileDirname|fileBasename|fileBasenameNoExtension|fileExtname)\s*\}\}"
    r"|\{\{\s*_base_\.[\w.]+\s*\}\}"
)


def check_config_text(value: Any, where: str = "") -> None:
    """Every string in ``value`` (a request dumped to JSON types): ``ValueError`` naming the field when one holds a
    pattern OpenCompass's config loader rewrites (:data:`CONFIG_SUBSTITUTION`)."""
    if isinstance(value, str):
        found = CONFIG_SUBSTITUTION.search(value)
        if found:
            raise ValueError(
                f"{where or 'value'}: {found.group(0)[:40]!r} is rewritten by OpenCompass's config loader (mmengine:"
                " an environment variable, a file name or a base config's value) -- write it another way"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            check_config_text(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_config_text(item, f"{where}[{index}]")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Strict):
    """A key inside a Kubernetes Secret (or, locally, an environment variable of the same name)."""

    name: DnsLabel
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]{1,253}$")] = "api-key"


#: A Hugging Face hub id, ``name`` or ``org/name`` (letters, digits, ``_ . -``; not starting with ``.``; at most one
#: ``/``). The one rule telling a hub id from a path: the policy (budeval/policy/paths.py) and the identity
#: (budeval/engine/identity.py) both ask :func:`is_hub_id`.
HUB_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95})?\Z")


def is_hub_id(value: str) -> bool:
    """``name`` or ``org/name`` (see :data:`HUB_ID`); a path starting with ``/`` never is, nor a value with a control
    character (``\\Z``, not ``$``, which would let ``org/name\n`` through)."""
    return bool(HUB_ID.fullmatch(value)) and ".." not in value


def same_location(a: str, b: str) -> bool:
    """Whether two model/tokenizer locations name the same thing: equal hub ids, or absolute paths equal once
    spelled canonically (``/models/m/`` is ``/models/m``; no file system access, symlinks are not followed)."""
    if a.startswith("/") and b.startswith("/"):
        return posixpath.normpath(a) == posixpath.normpath(b)
    return a == b


class HuggingFaceModel(Strict):
    """A model loaded by OpenCompass's HuggingFace wrapper: a local folder or a hub id, pinned by revision."""

    type: Literal["huggingface"] = "huggingface"
    path: Annotated[str, Field(min_length=1, max_length=512)]
    revision: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    tokenizer_path: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    #: ``chat`` applies the tokenizer's chat template, ``base`` sends plain text.
    mode: Literal["chat", "base"] = "chat"

    @field_validator("path", "tokenizer_path")
    @classmethod
    def _no_parent_refs(cls, v: str | None) -> str | None:
        if v is not None and (".." in v.split("/") or "\x00" in v):
            raise ValueError("must not contain '..' components or NUL")
        return v

    @property
    def separate_tokenizer(self) -> str | None:
        """``tokenizer_path`` when it names another place than ``path`` (:func:`same_location`), else None: the
        model's own tokenizer, loaded at the model's revision. Rendering and the identity both follow this."""
        if self.tokenizer_path is None or same_location(self.tokenizer_path, self.path):
            return None
        return self.tokenizer_path


class EndpointModel(Strict):
    """An OpenAI-compatible API; the key is never in the request, only a reference to where it lives."""

    type: Literal["openai"] = "openai"
    base_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=512)]
    model: Annotated[str, Field(min_length=1, max_length=256)]
    api_key_secret: SecretRef | None = None
    #: Tokenizer OpenCompass counts prompt tokens with (local folder or hub id). Without it OpenCompass tries the hub
    #: under the served model's name, then tiktoken's gpt-4 encoding: both are downloads an offline run cannot make.
    tokenizer_path: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    #: How the run calls the endpoint; unset: the operator's settings (``endpoint_query_per_second``,
    #: ``endpoint_max_parallel``, ``endpoint_retries``, ``endpoint_timeout_s``; docs/settings.md).
    query_per_second: Annotated[int, Field(ge=1, le=10_000)] | None = None
    max_parallel: Annotated[int, Field(ge=1, le=1024)] | None = None
    retries: Annotated[int, Field(ge=0, le=1000)] | None = None
    timeout_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] | None = None

    @field_validator("tokenizer_path")
    @classmethod
    def _no_parent_refs(cls, v: str | None) -> str | None:
        if v is not None and (".." in v.split("/") or "\x00" in v):
            raise ValueError("must not contain '..' components or NUL")
        return v


class ModelSpec(Strict):
    name: SafeName
    source: Annotated[HuggingFaceModel | EndpointModel, Field(discriminator="type")]


class CustomDataset(Strict):
    """A ``.jsonl`` dataset file: ``question``/``answer`` (qa) or ``question``, ``A``-``D``, ``answer`` (mcq).

    ``scoring`` says how an answer is judged right (see :data:`SCORINGS`; omitted or null: the kind's default,
    ``contains`` for qa, ``option`` for mcq). It is a plain field, so it is part of the evaluation's identity.
    """

    name: SafeName
    path: Annotated[str, Field(min_length=1, max_length=512)]
    kind: DatasetKind = "qa"
    #: Never left at this placeholder: ``_default_scoring`` fills the kind's default before validation.
    scoring: Annotated[str, Field(max_length=512)] = ""

    @model_validator(mode="before")
    @classmethod
    def _default_scoring(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("scoring") is None:
            kind = data.get("kind", "qa")
            if kind in SCORINGS:
                return {**data, "scoring": SCORINGS[kind][0]}
        return data

    @field_validator("path")
    @classmethod
    def _jsonl(cls, v: str) -> str:
        if not v.endswith(".jsonl") or ".." in v.split("/"):
            raise ValueError("must be a .jsonl path without '..' components")
        return v

    @model_validator(mode="after")
    def _scoring_fits_kind(self) -> CustomDataset:
        check_scoring(self.scoring, self.kind)
        return self


def _dataset_ref_kind(value: Any) -> str:
    return "custom" if isinstance(value, dict | CustomDataset) else "name"


#: A dataset name or a custom dataset. Discriminated by the JSON type, so a bad custom dataset is reported by its
#: own error (e.g. a scoring's reason), not as "Input should be a valid string".
DatasetRef = Annotated[
    Annotated[SafeName, Tag("name")] | Annotated[CustomDataset, Tag("custom")],
    Discriminator(_dataset_ref_kind),
]


class JudgeSpec(Strict):
    """A judge model scoring free-form answers (docs/usage.md "Judges"): OpenCompass's ``GenericLLMEvaluator`` asks
    it, per example, whether the answer matches the gold; it answers ``A`` (right) or ``B`` (wrong).

    ``template``: the judge's prompt with ``{question}``, ``{answer}`` (the gold) and ``{prediction}`` (the evaluated
    model's answer); None: budeval's default (budeval/engine/judging.py). The judge's model, its revision/commit,
    the template's sha256 and these settings are part of the evaluation's identity. An endpoint judge's key follows
    the same credential policy as an endpoint model (``api_key_secret`` is a registered credential's reference).
    """

    model: ModelSpec
    template: Annotated[str, Field(min_length=1, max_length=16384)] | None = None
    max_out_len: Annotated[int, Field(ge=1, le=32768)] = 16
    max_seq_len: Annotated[int, Field(ge=16, le=1_048_576)] = 2048
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 4
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.0

    @field_validator("template")
    @classmethod
    def _placeholders(cls, v: str | None) -> str | None:
        if v is not None and "{prediction}" not in v:
            raise ValueError("the judge template must contain {prediction} (and usually {question} and {answer})")
        return v


class GenerationSettings(Strict):
    max_out_len: Annotated[int, Field(ge=1, le=32768)] = 64
    max_seq_len: Annotated[int, Field(ge=16, le=1_048_576)] = 2048
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 4
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.0
    #: Accepted and stored, but OpenCompass 0.5.4 takes no seed: not part of the identity (docs/workflow.md).
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class Toleration(Strict):
    key: Annotated[str, Field(max_length=253)] | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: Annotated[str, Field(max_length=63)] | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Resources(Strict):
    gpus: Annotated[int, Field(ge=0, le=64)] = 1
    gpu_resource_name: Annotated[str, Field(pattern=r"^[a-z0-9.\-]+/[a-z0-9.\-]+$")] = "nvidia.com/gpu"
    cpu: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?m?$")] | None = None
    memory: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")] | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    priority_class: DnsLabel | None = None
    queue: DnsLabel | None = None


#: The gate's option bounds, one place for the request's ``gate`` block, ``budeval gate`` and ``GET /gate``
#: (budeval.decisions.gate.GateOptions). Tolerance: points of the stored scale, finite, at most the whole scale.
#: Alpha: at least 1e-6 (the CI's confidence 1 - alpha must stay below 1 in floating point).
GateTolerance = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]
ALPHA_MIN = 1e-6
GateAlpha = Annotated[float, Field(ge=ALPHA_MIN, lt=1.0, allow_inf_nan=False)]
GateSeed = Annotated[int, Field(ge=0, le=2**63 - 1)]
GateIterations = Annotated[int, Field(ge=100, le=100_000)]
#: A baseline: an eval id, ``best:<experiment>`` or ``latest:<label>=<value>`` (a label's key, without ``=``, and
#: any value the request's ``labels`` allow, spaces included).
BASELINE_PATTERN = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?|best:\S+|latest:[^=]{1,63}=.{0,256})$"
BASELINE_MAX = 330


class GateSpec(Strict):
    """Run the regression gate of this evaluation against ``baseline`` once it has finished, and publish
    ``gate.passed`` / ``gate.failed`` / ``gate.inconclusive`` (docs/decisions.md; the options of ``budeval gate``)."""

    #: An eval id, ``best:<experiment>`` or ``latest:<label>=<value>``.
    baseline: Annotated[str, Field(max_length=BASELINE_MAX, pattern=BASELINE_PATTERN)]
    tolerance: GateTolerance = 1.0
    alpha: GateAlpha = 0.05
    correction: Literal["holm", "bh", "none"] = "holm"
    seed: GateSeed = 0
    iterations: GateIterations = 2000


#: An experiment or series name: letters, digits, ``_ . -``, starting with a letter or digit (a URL path segment).
SERIES_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
SeriesName = Annotated[str, Field(pattern=SERIES_NAME_PATTERN)]


class CheckpointSpec(Strict):
    """This evaluation's place in a checkpoint series (docs/decisions.md "Checkpoint series"): the training run's
    ``series`` name, the training ``step`` and optionally the ``tokens_seen`` at that step. Stored as columns of the
    evaluation's row (``checkpoint_series``, ``checkpoint_step``, ``checkpoint_tokens``); not part of the identity
    (the model is: two checkpoints are two models)."""

    series: SeriesName
    step: Annotated[int, Field(ge=0, le=2**63 - 1)]
    tokens_seen: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None


def _loads_weights(judge: Any) -> bool:
    """Whether a request's raw ``judge`` is a Hugging Face model (its weights load where OpenCompass runs)."""
    model = judge.get("model") if isinstance(judge, dict) else getattr(judge, "model", None)
    source = model.get("source") if isinstance(model, dict) else getattr(model, "source", None)
    kind = source.get("type", "huggingface") if isinstance(source, dict) else getattr(source, "type", None)
    return source is not None and kind == "huggingface"


class EvalRequest(Strict):
    eval_id: DnsLabel
    experiment_id: SeriesName | None = None
    model: ModelSpec
    datasets: list[DatasetRef] | None = None
    suite: DnsLabel | None = None
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    resources: Resources = Field(default_factory=Resources)
    #: Overall timeout of the evaluation, seconds.
    timeout_s: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 6 * 3600
    labels: dict[Annotated[str, Field(max_length=63)], Annotated[str, Field(max_length=256)]] = Field(
        default_factory=dict
    )
    #: Run again even when an identical finished evaluation exists.
    force: bool = False
    #: One run per dataset (parallel, isolated failures) or one run for all datasets.
    split: Literal["per_dataset", "single"] = "per_dataset"
    #: A regression gate to run after the evaluation (not part of the identity).
    gate: GateSpec | None = None
    #: The evaluation's place in a checkpoint series (not part of the identity).
    checkpoint: CheckpointSpec | None = None
    #: The judge model of datasets scored ``judge`` (part of the identity).
    judge: JudgeSpec | None = None
    #: Judge the stored predictions of this earlier evaluation again instead of running inference (``budeval
    #: rejudge``): the evaluated model is not called; its answers are replayed from the store. Part of the identity.
    rejudge_of: DnsLabel | None = None

    @model_validator(mode="before")
    @classmethod
    def _endpoint_runs_need_no_gpu(cls, data: Any) -> Any:
        """An endpoint model runs no weights where OpenCompass runs: unless the request sets ``resources.gpus``, its
        runs request no GPU (a Hugging Face model's default stays one, and so does a run with a Hugging Face judge)."""
        if not isinstance(data, dict):
            return data
        model = data.get("model")
        source = model.get("source") if isinstance(model, dict) else getattr(model, "source", None)
        kind = source.get("type") if isinstance(source, dict) else getattr(source, "type", None)
        if kind != "openai" or _loads_weights(data.get("judge")):
            return data
        resources = data.get("resources")
        if resources is None:
            return {**data, "resources": {"gpus": 0}}
        if isinstance(resources, dict) and "gpus" not in resources:
            return {**data, "resources": {**resources, "gpus": 0}}
        if isinstance(resources, Resources) and "gpus" not in resources.model_fields_set:
            return {**data, "resources": resources.model_copy(update={"gpus": 0})}
        return data

    @model_validator(mode="after")
    def _no_config_substitution(self) -> EvalRequest:
        """Request text reaches the rendered OpenCompass config: none may be rewritten there (check_config_text)."""
        check_config_text(self.model_dump(mode="json"))
        return self

    @model_validator(mode="after")
    def _datasets_or_suite(self) -> EvalRequest:
        if not self.datasets and not self.suite:
            raise ValueError("give 'datasets' or 'suite'")
        if self.datasets and self.suite:
            raise ValueError("give 'datasets' or 'suite', not both")
        if self.datasets is not None:
            names = [d if isinstance(d, str) else d.name for d in self.datasets]
            if len(set(names)) != len(names):
                raise ValueError("dataset names must be unique")
            if len(names) > 200:
                raise ValueError("at most 200 datasets")
        if len(self.labels) > 64:
            raise ValueError("at most 64 labels")
        if self.gate is not None and self.gate.baseline == self.eval_id:
            raise ValueError("the gate's baseline is this evaluation itself")
        judged = [d.name for d in self.datasets or [] if isinstance(d, CustomDataset) and d.scoring == JUDGE_SCORING]
        if judged and self.judge is None:
            raise ValueError(f"dataset(s) {', '.join(judged)} are scored 'judge': give a 'judge' model")
        # A judge that scores no dataset is refused by the engine's catalog (budeval/engine/catalog.py
        # resolve_datasets): only it knows which stock datasets (and a suite's) are judged.
        if self.rejudge_of is not None:
            if self.judge is None:
                raise ValueError("'rejudge_of' needs a 'judge'")
            if self.rejudge_of == self.eval_id:
                raise ValueError("'rejudge_of' names this evaluation itself")
        return self

    def loads_weights(self) -> bool:
        """Whether a run loads model weights where OpenCompass runs: a Hugging Face model, or a Hugging Face judge
        (an endpoint model with an endpoint judge, or none, only calls out: no GPU, small pods by default)."""
        return not isinstance(self.model.source, EndpointModel) or _loads_weights(self.judge)

    def dataset_names(self) -> list[str]:
        return [d if isinstance(d, str) else d.name for d in (self.datasets or [])]
