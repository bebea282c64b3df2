"""How rendered OpenCompass configs (budeval/engine/render.py) spell a model: a Hugging Face model
(``HuggingFacewithChatTemplate`` / ``HuggingFaceBaseModel``), an endpoint model (budeval's usage-recording
``BudevalOpenAISDK``, or OpenCompass's plain ``OpenAISDK`` for a judge), and the replay model of a re-judging run.
The dict keys follow OpenCompass 0.5.4's model classes (opencompass/models/huggingface_above_v4_33.py,
openai_api.py)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Protocol

from budeval.config import Settings
from budeval.config.settings import default
from budeval.schemas.request import EndpointModel, EvalRequest, HuggingFaceModel

#: budeval's OpenAISDK subclass that records usage (opencompass_plugin/budeval_usage.py), for evaluated endpoints.
ENDPOINT_MODEL = "BudevalOpenAISDK"
#: The stand-in model of a re-judging run (opencompass_plugin/budeval_scoring.py).
REPLAY_MODEL = "BudevalReplay"
#: Prompt texts as stored (``ROLE: text`` lines) -> the stored predictions for that prompt, in example order.
Replay = dict[str, list[str]]


@dataclass(frozen=True)
class EndpointCalls:
    """How a run calls an endpoint model: requests per second, requests in flight, retries after a failed attempt
    and seconds per request (settings ``endpoint_*``; docs/settings.md)."""

    query_per_second: int
    max_parallel: int
    retries: int
    timeout_s: float

    @classmethod
    def resolve(cls, source: EndpointModel, settings: Settings | None = None) -> EndpointCalls:
        """The request's values where it sets them, else ``settings``' (their defaults when None)."""

        def pick(field: str, setting: str) -> object:
            own = getattr(source, field)
            if own is not None:
                return own
            return getattr(settings, setting) if settings is not None else default(setting)

        return cls(
            query_per_second=int(str(pick("query_per_second", "endpoint_query_per_second"))),
            max_parallel=int(str(pick("max_parallel", "endpoint_max_parallel"))),
            retries=int(str(pick("retries", "endpoint_retries"))),
            timeout_s=float(str(pick("timeout_s", "endpoint_timeout_s"))),
        )


class Generation(Protocol):
    """The generation settings a rendered model takes: the request's ``generation`` or its ``judge``."""

    @property
    def max_out_len(self) -> int: ...
    @property
    def max_seq_len(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def temperature(self) -> float: ...


def model_dict(
    name: str,
    source: HuggingFaceModel | EndpointModel,
    gen: Generation,
    gpus: int,
    indent: str,
    settings: Settings | None,
    *,
    judge: bool = False,
) -> tuple[str, list[str]]:
    """(OpenCompass model class, the lines of its ``dict(...)``, indented by ``indent``). An endpoint judge is
    OpenCompass's plain ``OpenAISDK``: the run's usage records stay the evaluated model's."""
    if isinstance(source, HuggingFaceModel):
        cls, lines = _hf_model(name, source, gen, gpus)
    else:
        calls = EndpointCalls.resolve(source, settings)
        cls, lines = _endpoint_model(name, source, gen, calls, "OpenAISDK" if judge else ENDPOINT_MODEL)
    return cls, [indent + line for line in lines]


def replay_model(request: EvalRequest, replay: Replay) -> list[str]:
    """The evaluated model's stand-in for a re-judging run: the stored predictions, keyed by prompt text."""
    gen = request.generation
    return [
        "    dict(",
        f"        type={REPLAY_MODEL},",
        f"        abbr={request.model.name!r},",
        f"        path={'replay:' + str(request.rejudge_of)!r},",
        # Encoded: stored prompts and predictions are data, and mmengine rewrites ``{{$VAR:x}}`` in a config's text
        # (budeval/schemas/request.py CONFIG_SUBSTITUTION); base64 has no braces.
        f"        answers_b64={_encoded(dict(sorted(replay.items())))!r},",
        "        meta_template=dict(round=[dict(role='HUMAN', api_role='HUMAN'),"
        " dict(role='BOT', api_role='BOT', generate=True)]),",
        f"        max_out_len={gen.max_out_len!r},",
        f"        max_seq_len={gen.max_seq_len!r},",
        f"        batch_size={gen.batch_size!r},",
        "        run_cfg=dict(num_gpus=0),",
        "    ),",
    ]


def _hf_model(name: str, source: HuggingFaceModel, gen: Generation, gpus: int) -> tuple[str, list[str]]:
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
        f"    model_kwargs={literal(model_kwargs)},",
        f"    tokenizer_kwargs={literal(tokenizer_kwargs)},",
        f"    generation_kwargs={literal(generation_kwargs)},",
        f"    max_out_len={gen.max_out_len!r},",
        f"    max_seq_len={gen.max_seq_len!r},",
        f"    batch_size={gen.batch_size!r},",
        f"    run_cfg=dict(num_gpus={gpus!r}),",
        "),",
    ]
    return cls, lines


def _endpoint_model(
    name: str, source: EndpointModel, gen: Generation, calls: EndpointCalls, cls: str
) -> tuple[str, list[str]]:
    # 'ENV' makes OpenCompass read OPENAI_API_KEY at run time; 'EMPTY' is the usual placeholder of keyless servers.
    key = "ENV" if source.api_key_secret is not None else "EMPTY"
    lines = [
        "dict(",
        f"    type={cls},",
        f"    abbr={name!r},",
        f"    path={source.model!r},",
        f"    openai_api_base={source.base_url!r},",
        f"    key={key!r},",
        *([f"    tokenizer_path={source.tokenizer_path!r},"] if source.tokenizer_path else []),
        "    meta_template=dict(round=[dict(role='HUMAN', api_role='HUMAN'),"
        " dict(role='BOT', api_role='BOT', generate=True)]),",
        f"    query_per_second={calls.query_per_second!r},",
        f"    max_workers={calls.max_parallel!r},",
        # OpenCompass's ``retry`` counts attempts: the first one plus the retries.
        f"    retry={calls.retries + 1!r},",
        f"    timeout={calls.timeout_s!r},",
        f"    temperature={gen.temperature!r},",
        f"    max_out_len={gen.max_out_len!r},",
        f"    max_seq_len={gen.max_seq_len!r},",
        f"    batch_size={gen.batch_size!r},",
        "    run_cfg=dict(num_gpus=0),",
        "),",
    ]
    return cls, lines


def _encoded(value: object) -> str:
    """``value`` as base64 of its JSON (UTF-8): text that reaches the config without any character mmengine reads."""
    return base64.b64encode(json.dumps(value, ensure_ascii=False).encode("utf-8")).decode("ascii")


def literal(values: dict[str, object]) -> str:
    """``dict(k=v, ...)`` with keys in a fixed order and values as Python literals."""
    return "dict(" + ", ".join(f"{k}={v!r}" for k, v in sorted(values.items())) + ")"
