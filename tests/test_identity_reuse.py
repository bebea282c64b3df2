"""Reuse answers only identical work (issue 12's first list, each case through the real prepare activity and chDB).

An evaluation is prepared and recorded ``completed``; a second request is prepared after something changed. Before
the identity (budeval/engine/identity.py) the params hash covered a suite's name, a custom file's path and a model's
path/revision text, so every "changed" case below was reused with stale scores and the "same work" case was not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from budeval.backends.local import LocalBackend
from budeval.config import Settings
from budeval.engine.catalog import load_suites
from budeval.engine.digests import DigestCache
from budeval.engine.identity import _digest_cache
from budeval.engine.results import parse_run
from budeval.events.publisher import MemoryPublisher
from budeval.storage.factory import open_archive, open_store
from budeval.workflow.activities import Deps, EvalActivities
from budeval.workflow.models import FinishInput, Prepared, PrepareInput


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "light.yaml").write_text("name: light\ndatasets: [tiny_qa, tiny_mcq]\n")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\x00" * 1024)
    settings = Settings(data_dir=tmp_path / "data", suites_path=[suites])
    store = open_store(settings.resolved_store_dsn())
    store.migrate()
    deps = Deps(
        settings=settings,
        backend=LocalBackend(settings),
        store=store,
        archive=open_archive(settings.resolved_archive_url()),
        publisher=MemoryPublisher(),
        parse=parse_run,
        suites=load_suites(suites),
    )
    try:
        yield {"acts": EvalActivities(deps), "deps": deps, "suites": suites, "model": model, "tmp": tmp_path}
    finally:
        store.close()


def _request(env: dict[str, Any], eval_id: str, **extra: Any) -> dict[str, Any]:
    source = {"type": "huggingface", "path": str(env["model"])}
    return {"eval_id": eval_id, "model": {"name": "m", "source": source}, "datasets": ["tiny_qa"], **extra}


def _prepare(env: dict[str, Any], request: dict[str, Any]) -> Prepared:
    now = datetime.now(UTC).isoformat()
    payload = PrepareInput(request=request, started_at=now).model_dump(mode="json")
    return Prepared.model_validate(env["acts"].prepare_evaluation(None, payload))


def _completed(env: dict[str, Any], request: dict[str, Any]) -> Prepared:
    """Prepare ``request`` (it must run) and record it ``completed``."""
    prepared = _prepare(env, request)
    assert prepared.validated is not None and prepared.reusable is None, prepared
    now = datetime.now(UTC).isoformat()
    finish = FinishInput(
        validated=prepared.validated,
        outcome="completed",
        runs=[],
        archive_url=None,
        reason=None,
        started_at=now,
        finished_at=now,
    )
    env["acts"].finish_evaluation(finish)
    return prepared


def _reused_from(env: dict[str, Any], request: dict[str, Any]) -> str | None:
    prepared = _prepare(env, request)
    assert prepared.rejected is None, prepared.rejected
    return prepared.reusable.reused_from if prepared.reusable is not None else None


def test_an_identical_request_is_reused(env: dict[str, Any]) -> None:
    _completed(env, _request(env, "first"))
    assert _reused_from(env, _request(env, "second", labels={"run": "2"}, resources={"gpus": 2})) == "first"


def test_a_suite_edited_down_to_one_dataset_is_not_reused(env: dict[str, Any]) -> None:
    _completed(env, _request(env, "full", datasets=None, suite="light"))
    (env["suites"] / "light.yaml").write_text("name: light\ndatasets: [tiny_qa]\n")
    env["deps"].suites = load_suites(env["suites"])  # the service reloads suites at start
    assert _reused_from(env, _request(env, "edited", datasets=None, suite="light")) is None


def test_an_overwritten_custom_dataset_is_not_reused(env: dict[str, Any]) -> None:
    data = env["tmp"] / "mine.jsonl"
    data.write_text('{"question": "1+1?", "answer": "2"}\n')
    custom = [{"name": "mine", "path": str(data)}]
    _completed(env, _request(env, "old-file", datasets=custom))
    data.write_text('{"question": "2+2?", "answer": "4"}\n{"question": "5+5?", "answer": "10"}\n')
    assert _reused_from(env, _request(env, "new-file", datasets=custom)) is None


def test_weights_retrained_in_place_are_not_reused(env: dict[str, Any]) -> None:
    _completed(env, _request(env, "ckpt-1"))
    weights = env["model"] / "model.safetensors"
    st = weights.stat()
    weights.write_bytes(b"\x01" * 1024)  # same size, new bytes
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert _reused_from(env, _request(env, "ckpt-2")) is None


def test_a_moving_hub_revision_is_never_reused(env: dict[str, Any]) -> None:
    hub = {"type": "huggingface", "path": "org/m", "revision": "main"}
    first = _prepare(env, {**_request(env, "hub-1"), "model": {"name": "m", "source": hub}})
    assert first.validated is not None and first.validated.params_hash == ""
    assert "could not be resolved" in first.validated.identity["unresolved"][0]
    now = datetime.now(UTC).isoformat()
    env["acts"].finish_evaluation(
        FinishInput(
            validated=first.validated,
            outcome="completed",
            runs=[],
            archive_url=None,
            reason=None,
            started_at=now,
            finished_at=now,
        )
    )
    assert _reused_from(env, {**_request(env, "hub-2"), "model": {"name": "m", "source": hub}}) is None


def test_a_suite_and_the_same_datasets_listed_are_the_same_work(env: dict[str, Any]) -> None:
    _completed(env, _request(env, "by-suite", datasets=None, suite="light"))
    assert _reused_from(env, _request(env, "by-list", datasets=["tiny_mcq", "tiny_qa"])) == "by-suite"


def test_the_identity_is_stored_with_the_evaluation(env: dict[str, Any]) -> None:
    prepared = _completed(env, _request(env, "stored"))
    record = env["deps"].store.get_evaluation("stored")
    assert record is not None and record.params_hash == prepared.validated.identity["hash"]  # type: ignore[union-attr]
    assert record.provenance["identity"]["model"]["files"]["model.safetensors"]
    assert isinstance(_digest_cache(str(env["deps"].settings.data_dir / "digests.json")), DigestCache)
