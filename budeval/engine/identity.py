"""The identity of an evaluation: what makes two requests "the same work", computed here and nowhere else.

Two evaluations with equal identity hashes compute the same scores, so the later one may be answered from the earlier
(``reused``). The definition (docs/workflow.md, "The same work") -- every component below goes into the hash:

- ``datasets``: the resolved list (a suite expanded to its datasets, so ``suite: light`` and ``datasets: [tiny_qa,
  tiny_mcq]`` are the same work), sorted by name, each with a content digest: bundled and custom ``.jsonl`` files by
  the sha256 of their bytes and of their ``<path>.meta.json`` (a custom dataset also by its whole spec but its
  path, ``CustomDataset.model_dump``, so fields added to it are covered without touching this module); stock
  OpenCompass configs by the config hash OpenCompass itself computes (``opencompass.utils.prompt.get_prompt_hash``,
  the summary's ``version`` column; shipped per engine version in ``stock_configs.json``, made by
  ``scripts/stock_config_hashes.py``) plus a digest of their data files under ``COMPASS_DATA_CACHE`` when they are
  present where the service runs;
- ``model``: a hub id (``is_hub_id``) by the commit sha its revision resolves to (a 40-hex revision is one; a branch
  or tag is asked of the hub, ``HF_ENDPOINT``, unless ``HF_HUB_OFFLINE``), or a local folder by the digests of its
  config, tokenizer, chat template and weight files (:mod:`budeval.engine.digests`: Hugging Face cache blob names,
  else bytes hashed once per (path, size, mtime)); the chat/base mode and the tokenizer's own identity when it is
  given apart (``HuggingFaceModel.separate_tokenizer``);
- ``generation``: every generation setting (``GenerationSettings``) but the seed, which reaches no OpenCompass setting;
- ``engine``: OpenCompass's version and the runner (the image in a cluster; locally ``local-venv`` and the venv's
  installed distributions, :func:`_engine`);
- ``judge`` (only when the request names one and a dataset is judged by it: a custom dataset scored ``judge`` or a
  stock LLM-judge dataset, catalog.py ``judged_datasets``; or when it re-judges): the judge model's identity (as
  ``model`` above), the sha256 of its prompt template and its generation settings (budeval/engine/judging.py
  ``judge_component``);
- ``rejudge_of`` (only for a re-judging request): the evaluation whose stored predictions are judged again -- the
  answers judged are that evaluation's, not a new inference.

Not in it: the eval id, experiment id, checkpoint (series, step, tokens seen), labels, resources, timeout,
``force``, ``split``, the gate and the model's display name (they change where, how or under which name it runs,
not what it computes; two checkpoints differ by their model). A component that cannot be resolved (a hub revision
while offline, a file the service cannot read, an endpoint whose served weights are unknowable) makes the identity
*unresolved*: ``hash`` is None and the evaluation is never reused, never "equal" to anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from functools import cache, partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field

from budeval.config import Settings
from budeval.engine.catalog import BUNDLED, STOCK, judged_datasets, resolve_datasets, stock_table
from budeval.engine.digests import DigestCache, combine
from budeval.engine.judging import judge_component
from budeval.engine.render import scoring_source
from budeval.schemas.request import CustomDataset, EndpointModel, EvalRequest, HuggingFaceModel, is_hub_id

#: Bumped when the definition above changes, so identities of different definitions never compare equal.
IDENTITY_VERSION = 3
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
#: Top-level files of a model folder that make up the model (config, tokenizer, chat template, weights).
MODEL_FILE_SUFFIXES = frozenset(
    {
        ".json",
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".gguf",
        ".ckpt",
        ".h5",
        ".msgpack",
        ".model",
        ".txt",
        ".jinja",
        ".tiktoken",
    }
)
#: ``(repo id, revision) -> commit sha`` or None when it cannot be resolved.
HubResolver = Callable[[str, str], str | None]


class Identity(BaseModel):
    """``hash``: sha256 hex over ``components`` (None: unresolved, see ``unresolved`` for why; never reused)."""

    hash: str | None
    components: dict[str, Any]
    unresolved: list[str] = Field(default_factory=list)

    @property
    def reusable(self) -> bool:
        return self.hash is not None


def runner_of(settings: Settings) -> str:
    """What runs OpenCompass: the runner image in a cluster, ``local-venv`` for the local backend."""
    return settings.runner_image if settings.backend == "kubernetes" else "local-venv"


def default_digests(settings: Settings) -> DigestCache:
    """The installation's digest cache, ``{data_dir}/digests.json``, one per data dir and process."""
    return _digest_cache(str(settings.data_dir / "digests.json"))


@cache
def _digest_cache(path: str) -> DigestCache:
    return DigestCache(Path(path))


def compute_identity(
    request: EvalRequest,
    suites: Mapping[str, list[str]],
    settings: Settings,
    *,
    digests: DigestCache | None = None,
    hub: HubResolver | None = None,
) -> Identity:
    """The identity of ``request`` (see the module doc). Raises ``ValidationError`` for an unknown suite/dataset."""
    names = resolve_datasets(request, suites)
    digests = digests if digests is not None else default_digests(settings)
    hub = hub if hub is not None else partial(resolve_hub_revision, settings=settings)
    unresolved: list[str] = []
    custom = {d.name: d for d in request.datasets or [] if isinstance(d, CustomDataset)}
    datasets = [
        _dataset(custom.get(name, name), settings, digests, unresolved) for name in sorted(names)
    ]
    components: dict[str, Any] = {
        "definition": IDENTITY_VERSION,
        "datasets": datasets,
        "model": _model(request.model.source, digests, hub, unresolved),
        # The seed reaches no OpenCompass setting (0.5.4's models take none): it is not part of the work.
        "generation": request.generation.model_dump(mode="json", exclude={"seed"}),
        "engine": _engine(settings),
    }
    # Added only when a dataset is judged (a custom one scored ``judge`` or a stock LLM-judge one): a judge named
    # for nothing it judges changes nothing computed, and requests without one keep their hashes.
    if request.judge is not None and (judged_datasets(request, names) or request.rejudge_of is not None):
        judge_model = _model(request.judge.model.source, digests, hub, unresolved)
        components["judge"] = judge_component(request.judge, judge_model)
    if request.rejudge_of is not None:
        components["rejudge_of"] = request.rejudge_of
    return Identity(hash=None if unresolved else combine(components), components=components, unresolved=unresolved)


# -- datasets --------------------------------------------------------------------------------------------------------
def _dataset(
    ref: str | CustomDataset, settings: Settings, digests: DigestCache, unresolved: list[str]
) -> dict[str, Any]:
    engine = settings.engine_version
    # budeval's own evaluator scores bundled and custom datasets: its code is part of what they compute.
    if isinstance(ref, CustomDataset):
        # Where the file lies is not the work (its bytes and its meta file are): a copy elsewhere is reused.
        spec = ref.model_dump(mode="json", exclude={"path"})
        out: dict[str, Any] = {"name": ref.name, "kind": "custom", "spec": spec}
        out.update(_data_file(Path(ref.path), f"custom dataset {ref.name!r}", digests, unresolved))
        out["scorer"] = _scorer_digest()
        return out
    if ref in BUNDLED:
        bundled = BUNDLED[ref]
        return {
            "name": ref,
            "kind": "bundled",
            "type": bundled.kind,
            **_data_file(bundled.path, f"bundled dataset {ref!r}", digests, unresolved),
            "scoring": bundled.scoring,
            "scorer": _scorer_digest(),
        }
    stock = STOCK[ref]
    entry = stock_table().get(engine, {}).get(ref)
    out = {"name": ref, "kind": "stock", "config": f"{stock.module}:{stock.variable}"}
    if entry is None:
        unresolved.append(f"stock dataset {ref!r}: no config hash recorded for OpenCompass {engine}")
        out["config_hash"] = None
        return out
    out["config_hash"] = entry["config_hash"]
    out["data"] = _stock_data(entry.get("data_paths", []), settings.compass_data_cache, digests, unresolved, ref)
    return out


@cache
def _scorer_digest() -> str:
    """sha256 of budeval's evaluator source (the code the rendered config carries into OpenCompass)."""
    return hashlib.sha256(scoring_source().encode("utf-8")).hexdigest()


def _data_file(path: Path, what: str, digests: DigestCache, unresolved: list[str]) -> dict[str, Any]:
    """``sha256`` of an OpenCompass custom dataset file and ``meta_sha256`` of ``<path>.meta.json`` (None when
    absent): OpenCompass completes the dataset from that file when it exists (``opencompass/datasets/custom.py``,
    ``parse_example_dataset``: template, prompts, input columns, ``test_range``), so it is part of the work."""
    meta = Path(f"{path}.meta.json")
    return {
        "sha256": _file_digest(path, what, digests, unresolved),
        "meta_sha256": _file_digest(meta, f"{what} meta file", digests, unresolved) if os.path.lexists(meta) else None,
    }


def _file_digest(path: Path, what: str, digests: DigestCache, unresolved: list[str]) -> str | None:
    try:
        return digests.file(path)
    except OSError as exc:
        unresolved.append(f"{what}: cannot read {path} where the service runs ({exc.strerror or exc})")
        return None


def _stock_data(
    paths: list[str], configured: str, digests: DigestCache, unresolved: list[str], name: str
) -> dict[str, Any]:
    """Digests of the data files of a stock dataset under ``COMPASS_DATA_CACHE``, for the paths present (none when
    it is unset: OpenCompass would then resolve them against the run's own working directory, not the service's)."""
    found: dict[str, Any] = {}
    if not configured:
        return found
    root = Path(configured)
    for rel in sorted(paths):
        where = root / rel
        try:
            if where.is_dir():
                files = digests.folder(where)
                found[rel] = combine(files) if files else None
            elif where.is_file():
                found[rel] = digests.file(where)
        except OSError as exc:
            unresolved.append(f"stock dataset {name!r}: cannot read {where} ({exc.strerror or exc})")
    return found


# -- model -----------------------------------------------------------------------------------------------------------
def is_local_path(path: str) -> bool:
    """A model path is a local folder unless it is a hub id (``is_hub_id``, the policy's rule): ``org/m`` is the
    hub's even when a folder of that name exists in the service's working directory (the run has another one)."""
    return not is_hub_id(path)


def _model(
    source: HuggingFaceModel | EndpointModel, digests: DigestCache, hub: HubResolver, unresolved: list[str]
) -> dict[str, Any]:
    if isinstance(source, EndpointModel):
        unresolved.append(f"endpoint model {source.model!r} at {source.base_url}: its served weights cannot be pinned")
        return {"kind": "endpoint", "base_url": source.base_url, "model": source.model}
    out: dict[str, Any] = {"mode": source.mode}
    out.update(_weights(source.path, source.revision, digests, hub, unresolved, "model"))
    if source.separate_tokenizer is not None:
        # As rendered: a tokenizer at another place is loaded at its own default revision; one spelled as the
        # model's path is the model's own tokenizer, loaded at the model's revision (render.py follows the same rule).
        out["tokenizer"] = _weights(source.separate_tokenizer, None, digests, hub, unresolved, "tokenizer")
    return out


def _weights(
    path: str, revision: str | None, digests: DigestCache, hub: HubResolver, unresolved: list[str], what: str
) -> dict[str, Any]:
    if is_local_path(path):
        folder = Path(path)
        if not folder.is_dir():
            unresolved.append(f"{what} folder {path} not found where the service runs")
            return {"kind": "folder", "files": None}
        try:
            # A link whose target is missing (a cache snapshot without its blob) is listed: reading it fails, and
            # the identity is unresolved rather than computed without the weights.
            names = [
                p.name
                for p in folder.iterdir()
                if (p.is_file() or p.is_symlink()) and not p.is_dir() and p.suffix in MODEL_FILE_SUFFIXES
            ]
            if not names:
                unresolved.append(f"{what} folder {path} holds no config, tokenizer or weight files")
                return {"kind": "folder", "files": None}
            files = digests.files(folder, names)
        except OSError as exc:
            unresolved.append(f"{what} folder {path}: cannot read {exc.filename} ({exc.strerror or exc})")
            return {"kind": "folder", "files": None}
        return {"kind": "folder", "files": files}
    wanted = revision or "main"
    commit = wanted if _COMMIT.match(wanted) else hub(path, wanted)
    if commit is None:
        unresolved.append(f"{what} {path!r} revision {wanted!r} could not be resolved to a commit (hub unreachable?)")
        return {"kind": "hub", "id": path, "revision": wanted, "commit": None}
    # The commit is the work: a branch, a tag or a short sha that resolves to it is the same (the requested name
    # is in the evaluation row's model_revision).
    return {"kind": "hub", "id": path, "commit": commit}


# -- engine ----------------------------------------------------------------------------------------------------------
def _engine(settings: Settings) -> dict[str, Any]:
    """OpenCompass's version and what runs it: the runner image in a cluster; locally the OpenCompass venv's
    installed distributions (the names of its ``*.dist-info`` folders, i.e. ``pip freeze`` without running pip) and
    the OpenCompass version found there; the interpreter path only when no venv can be read there (a run with it
    fails, and two unreadable venvs are not claimed equal)."""
    out: dict[str, Any] = {"name": "opencompass", "version": settings.engine_version, "runner": runner_of(settings)}
    if settings.backend == "kubernetes":
        return out
    python = settings.resolved_opencompass_python()
    dists = _venv_distributions(python) if python else []
    if not dists:
        out["python"] = python or None
        return out
    installed = [d[: -len(".dist-info")] for d in dists]
    out["opencompass"] = next((d.split("-", 1)[1] for d in installed if d.lower().startswith("opencompass-")), None)
    out["packages"] = combine({"dists": installed})
    return out


def _venv_distributions(python: str) -> list[str]:
    """Sorted ``*.dist-info`` folder names of the venv whose interpreter is ``python`` (``<venv>/bin/python``; the
    link is not followed: it points at the base interpreter). Empty when there is none."""
    root = Path(python).parent.parent
    found: list[str] = []
    for site in sorted(root.glob("lib*/python*/site-packages")):
        try:
            found += [p.name for p in site.iterdir() if p.name.endswith(".dist-info")]
        except OSError:
            continue
    return sorted(set(found))


_hub_memo: dict[tuple[str, str], tuple[float, str | None]] = {}
_hub_lock = threading.Lock()


def resolve_hub_revision(repo_id: str, revision: str, settings: Settings | None = None) -> str | None:
    """The commit sha of ``revision`` of a Hugging Face model repo, asked of ``HF_ENDPOINT`` (default the hub).

    None when ``HF_HUB_OFFLINE`` is set, or the hub cannot be reached or does not know it (private repos too: no
    token is sent). Answers are remembered for ``hub_memo_s`` (a minute) per process, so a burst of requests asks
    once; the hub gets ``hub_timeout_s`` to answer. ``settings``: the process's when None.
    """
    settings = settings if settings is not None else Settings.from_env()
    if settings.hub_offline():
        return None
    key = (repo_id, revision)
    now = time.monotonic()
    with _hub_lock:
        memo = _hub_memo.get(key)
        if memo is not None and memo[0] > now:
            return memo[1]
    import httpx

    endpoint = settings.resolved_hf_endpoint()
    url = f"{endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}"
    sha: str | None = None
    try:
        answer = httpx.get(url, timeout=settings.hub_timeout_s, follow_redirects=True)
        if answer.is_success:
            value = answer.json().get("sha")
            sha = value if isinstance(value, str) and _COMMIT.match(value) else None
    except Exception:  # unreachable, not JSON, an id that makes no URL (httpx.InvalidURL): unresolved, never a crash
        sha = None
    with _hub_lock:
        _hub_memo[key] = (now + settings.hub_memo_s, sha)
    return sha
