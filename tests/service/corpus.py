"""A generated corpus of malformed evaluation requests: every one must be rejected, none may start a run.

Each case is raw bytes as they would arrive on the subscription route (mostly wrapped in a CloudEvent, as daprd
delivers them, with the request as an object or as a JSON string; some bare or broken). Built deterministically from
a valid base request by mutations: bad ids, wrong types, missing fields, unknown fields, out-of-range values,
unknown suite or dataset, broken JSON, non-object data, oversize payloads.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

BASE: dict[str, Any] = {
    "eval_id": "corpus-base",
    "model": {"name": "m", "source": {"type": "huggingface", "path": "/models/m"}},
    "datasets": ["tiny_qa"],
}

BAD_IDS: list[Any] = [
    "../x", "a/b", "x" * 64, "x" * 1000, "A", "Upper-Case", "é", "ünï", "日本語", "emoji-😀", "", "-a", "a-", "a_b",
    "a.b", " a", "a ", "a\nb", "a\x00b", "..", ".", "/", "a//b", "%2e%2e", "a\\b", 123, 1.5, None, [], {}, True,
    ["a"], {"id": "a"},
]

WRONG_TYPES: dict[str, list[Any]] = {
    "model": [1, "m", [], None, {}, True, [{"name": "m"}]],
    "datasets": ["tiny_qa", 1, [1], [None], [], {}, [""], ["../etc"], ["a/b"], [["tiny_qa"]], [{"name": "x"}], True],
    "suite": [1, [], {}, "Light", "../light", "x" * 64, True],
    "generation": [1, "fast", [], True],
    "resources": [1, "big", [], True],
    "timeout_s": ["1h", 0, 59, -1, 10**9, 1.5, None, [], True],
    "labels": [1, "a", [], {"k": 1}, {"k": None}, {"k": ["v"]}, {"k" * 64: "v"}, {"k": "v" * 257}],
    "force": ["yes", 2, [], {}, None],
    "split": ["both", 1, None, "PER_DATASET"],
    "experiment_id": ["", "-x", "a b", "x" * 129, 1, [], "../x"],
}

GENERATION: dict[str, list[Any]] = {
    "max_out_len": [0, -1, 32769, "64", 1.5, None],
    "max_seq_len": [0, 15, 2**21, "2048"],
    "batch_size": [0, 1025, "4", -3],
    "temperature": [-0.1, 2.5, "hot", None],
    "seed": [-1, 2**31, "0", 1.5],
    "top_p": [0.9],  # unknown field
}

RESOURCES: dict[str, list[Any]] = {
    "gpus": [-1, 65, "1", 1.5],
    "gpu_resource_name": ["NVIDIA", "gpu", "nvidia.com/GPU", "", 1],
    "cpu": ["lots", "1 core", "-1", 2],
    "memory": ["1GB!", "lots", "-1Gi", 16],
    "node_selector": [["a"], "x", {"k": 1}],
    "tolerations": ["x", [1], [{"operator": "Maybe"}], [{"effect": "Sometimes"}]],
    "priority_class": ["High", "../x", 1],
    "queue": ["Q", "a/b", 1],
    "privileged": [True],  # unknown field
}

SOURCES: list[Any] = [
    {"type": "gguf", "path": "/m"},
    {"type": "huggingface"},
    {"type": "huggingface", "path": ""},
    {"type": "huggingface", "path": "../../etc/passwd"},
    {"type": "huggingface", "path": "/m/../x"},
    {"type": "huggingface", "path": "/m\x00"},
    {"type": "huggingface", "path": "/m", "revision": ""},
    {"type": "huggingface", "path": "/m", "mode": "instruct"},
    {"type": "huggingface", "path": "/m", "token": "hf_secret"},
    {"type": "openai", "base_url": "ftp://x", "model": "m"},
    {"type": "openai", "model": "m"},
    {"type": "openai", "base_url": "http://x"},
    {"type": "openai", "base_url": "http://x", "model": "m", "api_key": "sk-not-allowed-here"},
    {"type": "openai", "base_url": "http://x", "model": "m", "api_key_secret": {"name": "Bad_Name"}},
    {"type": "openai", "base_url": "http://x", "model": "m", "api_key_secret": "my-secret"},
    {"path": "/m"},
    "huggingface:/m",
    None,
]

MODEL_NAMES: list[Any] = ["", "../m", "a/b", "m m", "x" * 101, 1, None, "-m"]

UNKNOWN_DATASETS = ["nope", "gsm8k", "mmlu", "tiny-qa", "TINY_QA", "tiny_qa_v2", "humaneval", "ceval"]
UNKNOWN_SUITES = ["nope", "huge", "light2", "x", "standard-v2"]

BROKEN_JSON: list[bytes] = [
    b"", b"{", b"}", b"{'eval_id': 'a'}", b'{"eval_id": "a",}', b'{"eval_id": "a"', b"eval_id=a", b"\xff\xfe\x00",
    b'{"eval_id": "a"} trailing', b"NaN", b"undefined", b"\x00\x01\x02", b"<xml/>", b'{"a": NaN', b"[",
    b'{"eval_id": "\xff"}', b" " * 10,
]

NON_OBJECTS: list[Any] = [None, 1, 1.5, "a string", [], [1, 2], [BASE], True, False]


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    #: The eval id a valid-id case carries (the rejection should name it), else None.
    eval_id: str | None = None


def _with(path: tuple[str, ...], value: Any, remove: bool = False) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    target = doc
    for key in path[:-1]:
        target = target.setdefault(key, {})
    if remove:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return doc


def _mutations() -> Iterator[tuple[str, dict[str, Any] | Any]]:
    for bad in BAD_IDS:
        yield f"eval_id={bad!r:.40}", _with(("eval_id",), bad)
    for key, values in WRONG_TYPES.items():
        for value in values:
            doc = _with((key,), value)
            if key == "suite":
                doc.pop("datasets")
            yield f"{key}={value!r:.40}", doc
    for key, values in GENERATION.items():
        for value in values:
            yield f"generation.{key}={value!r:.30}", _with(("generation", key), value)
    for key, values in RESOURCES.items():
        for value in values:
            yield f"resources.{key}={value!r:.30}", _with(("resources", key), value)
    for i, source in enumerate(SOURCES):
        yield f"model.source[{i}]", _with(("model", "source"), source)
    for name in MODEL_NAMES:
        yield f"model.name={name!r:.30}", _with(("model", "name"), name)
    for path in [("eval_id",), ("model",), ("datasets",), ("model", "name"), ("model", "source")]:
        yield f"missing {'.'.join(path)}", _with(path, None, remove=True)
    for where in [(), ("model",), ("model", "source"), ("generation",), ("resources",)]:
        yield f"unknown field in {'.'.join(where) or 'request'}", _with((*where, "surprise"), 1)
    both = _with(("suite",), "light")
    yield "datasets and suite", both
    yield "duplicate datasets", _with(("datasets",), ["tiny_qa", "tiny_qa"])
    yield "201 datasets", _with(("datasets",), [f"d{i}" for i in range(201)])
    yield "65 labels", _with(("labels",), {f"k{i}": "v" for i in range(65)})
    yield "custom dataset outside .jsonl", _with(("datasets",), [{"name": "c", "path": "/data/c.csv"}])
    yield "custom dataset with ..", _with(("datasets",), [{"name": "c", "path": "/data/../c.jsonl"}])
    yield "custom dataset bad kind", _with(("datasets",), [{"name": "c", "path": "/c.jsonl", "kind": "essay"}])
    for name in UNKNOWN_DATASETS:
        yield f"unknown dataset {name}", _with(("datasets",), [name])
        yield f"unknown dataset {name} among known", _with(("datasets",), ["tiny_qa", name])
    for name in UNKNOWN_SUITES:
        doc = _with(("suite",), name)
        doc.pop("datasets")
        yield f"unknown suite {name}", doc
    for value in NON_OBJECTS:
        yield f"non-object {value!r:.30}", value


def _cloudevent(case_id: str, data: Any, as_string: bool = False) -> bytes:
    event = {
        "specversion": "1.0",
        "id": case_id,
        "source": "corpus",
        "type": "io.budeval.evaluation.requested",
        "datacontenttype": "application/json",
        "pubsubname": "budeval-pubsub",
        "topic": "budeval.requests",
        "data": json.dumps(data) if as_string else data,
    }
    return json.dumps(event).encode()


def _valid_id(doc: Any) -> str | None:
    from budeval.schemas.ids import DNS_LABEL

    value = doc.get("eval_id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and DNS_LABEL.fullmatch(value) else None


def generate() -> list[Case]:
    cases: list[Case] = []
    envelopes: list[tuple[str, Callable[[str, Any], bytes]]] = [
        ("ce-object", lambda cid, doc: _cloudevent(cid, doc)),
        ("ce-string", lambda cid, doc: _cloudevent(cid, doc, as_string=True)),
    ]
    for i, (name, doc) in enumerate(_mutations()):
        for tag, wrap in envelopes:
            cases.append(Case(f"#{i} {name} [{tag}]", wrap(f"corpus-{i}-{tag}", doc), _valid_id(doc)))
        if i % 3 == 0:  # a bare body (no CloudEvent envelope) for a third of them
            cases.append(Case(f"#{i} {name} [bare]", json.dumps(doc).encode(), _valid_id(doc)))
    for j, raw in enumerate(BROKEN_JSON):
        cases.append(Case(f"broken json #{j} [bare]", raw))
        text = raw.decode("utf-8", "replace")
        cases.append(Case(f"broken json #{j} [ce-string]", _cloudevent(f"broken-{j}", text)))
        cases.append(Case(f"broken json #{j} [ce-base64]", json.dumps({
            "specversion": "1.0", "id": f"b64-{j}", "source": "corpus", "type": "x",
            "datacontenttype": "application/octet-stream", "data_base64": base64.b64encode(raw).decode(),
        }).encode()))
    cases.append(Case("data_base64 not base64", json.dumps({
        "specversion": "1.0", "id": "b64-bad", "source": "corpus", "type": "x", "data_base64": "***"}).encode()))
    big = {**BASE, "eval_id": "corpus-big", "labels": {"pad": "x" * 200}, "padding": "x" * (10 * 1024 * 1024)}
    cases.append(Case("10 MB payload [ce-object]", _cloudevent("corpus-10mb", big)))
    cases.append(Case("300 KB payload [bare]", json.dumps({**BASE, "padding": "y" * 300_000}).encode()))
    cases.append(Case("deeply nested", b"[" * 5000 + b"]" * 5000))
    return cases


if __name__ == "__main__":
    generated = generate()
    print(len(generated), "cases")
    for case in generated[:20]:
        print(case.name, len(case.body))
