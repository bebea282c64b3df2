"""The evaluation request: what arrives on the request topic or ``POST /evals``.

Contract (DESIGN.md): ``eval_id`` is a DNS label; the model is a Hugging Face path/hub id with a revision or an
OpenAI-compatible endpoint whose API key is only a *reference* to a Kubernetes Secret; datasets are OpenCompass
dataset config names (or custom ``.jsonl`` datasets), or a named suite. Unknown fields are rejected so that a typo
never silently changes an evaluation.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from budeval.schemas.ids import DNS_LABEL

DnsLabel = Annotated[str, Field(pattern=DNS_LABEL.pattern, min_length=1, max_length=63)]
#: Dataset and model abbreviations become file names in OpenCompass's output: keep them path-safe.
SafeName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Strict):
    """A key inside a Kubernetes Secret (or, locally, an environment variable of the same name)."""

    name: DnsLabel
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]{1,253}$")] = "api-key"


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


class EndpointModel(Strict):
    """An OpenAI-compatible API; the key is never in the request, only a reference to where it lives."""

    type: Literal["openai"] = "openai"
    base_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=512)]
    model: Annotated[str, Field(min_length=1, max_length=256)]
    api_key_secret: SecretRef | None = None
    #: Tokenizer OpenCompass counts prompt tokens with (local folder or hub id). Without it OpenCompass tries the hub
    #: under the served model's name, then tiktoken's gpt-4 encoding: both are downloads an offline run cannot make.
    tokenizer_path: Annotated[str, Field(min_length=1, max_length=512)] | None = None

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
    """A ``.jsonl`` dataset file: ``question``/``answer`` (qa) or ``question``, ``A``-``D``, ``answer`` (mcq)."""

    name: SafeName
    path: Annotated[str, Field(min_length=1, max_length=512)]
    kind: Literal["qa", "mcq"] = "qa"

    @field_validator("path")
    @classmethod
    def _jsonl(cls, v: str) -> str:
        if not v.endswith(".jsonl") or ".." in v.split("/"):
            raise ValueError("must be a .jsonl path without '..' components")
        return v


DatasetRef = SafeName | CustomDataset


class GenerationSettings(Strict):
    max_out_len: Annotated[int, Field(ge=1, le=32768)] = 64
    max_seq_len: Annotated[int, Field(ge=16, le=1_048_576)] = 2048
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 4
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.0
    #: Engine-level seed for reproducibility; part of the evaluation's identity (budeval/engine/identity.py).
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


class EvalRequest(Strict):
    eval_id: DnsLabel
    experiment_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")] | None = None
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
        return self

    def dataset_names(self) -> list[str]:
        return [d if isinstance(d, str) else d.name for d in (self.datasets or [])]
