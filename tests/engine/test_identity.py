"""The identity of an evaluation (budeval/engine/identity.py): which differences make different work, and which not.

Real files, a real HTTP server standing in for the hub's revision API (HF_ENDPOINT), the real digest cache file.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from budeval.config import Settings
from budeval.engine import identity as identity_module
from budeval.engine.catalog import BUNDLED
from budeval.engine.digests import DigestCache
from budeval.engine.identity import Identity, compute_identity, stock_table
from budeval.schemas.request import EvalRequest

SUITES = {"light": ["tiny_qa", "tiny_mcq"], "one": ["tiny_qa"]}
COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    identity_module._hub_memo.clear()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "tokenizer.json").write_text('{"vocab": {}}')
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    (folder / "model.safetensors").write_bytes(b"\x01" * 4096)
    (folder / "README.md").write_text("about the model")
    return folder


def _request(model_path: str, **extra: Any) -> EvalRequest:
    base: dict[str, Any] = {
        "eval_id": "e1",
        "model": {"name": "m", "source": {"type": "huggingface", "path": model_path}},
        "datasets": ["tiny_qa", "tiny_mcq"],
    }
    return EvalRequest.model_validate({**base, **extra})


def _identity(request: EvalRequest, tmp_path: Path, settings: Settings | None = None, **kw: Any) -> Identity:
    settings = settings or Settings(data_dir=tmp_path / "data")
    return compute_identity(
        request, SUITES, settings, digests=kw.pop("digests", DigestCache(tmp_path / "d.json")), **kw
    )


def test_where_how_and_under_which_name_it_runs_is_not_the_work(tmp_path: Path, model_dir: Path) -> None:
    a = _identity(_request(str(model_dir)), tmp_path)
    b = _identity(
        _request(
            str(model_dir),
            eval_id="e2",
            experiment_id="x1",
            labels={"team": "q"},
            resources={"gpus": 4, "cpu": "2"},
            timeout_s=600,
            force=True,
            split="single",
            model={"name": "another-name", "source": {"type": "huggingface", "path": str(model_dir)}},
        ),
        tmp_path,
    )
    assert a.hash is not None and a.hash == b.hash


@pytest.mark.parametrize(
    "change",
    [
        {"generation": {"max_out_len": 128}},
        {"generation": {"temperature": 0.5}},
        {"datasets": ["tiny_qa"]},
    ],
)
def test_generation_settings_and_datasets_are_the_work(tmp_path: Path, model_dir: Path, change: Any) -> None:
    assert (
        _identity(_request(str(model_dir)), tmp_path).hash
        != _identity(_request(str(model_dir), **change), tmp_path).hash
    )


def test_the_seed_is_not_the_work(tmp_path: Path, model_dir: Path) -> None:
    """No OpenCompass setting takes the seed (docs/workflow.md "The same work"): seeds 0 and 1 compute the same."""
    assert (
        _identity(_request(str(model_dir)), tmp_path).hash
        == _identity(_request(str(model_dir), generation={"seed": 1}), tmp_path).hash
    )


def test_engine_version_and_runner_image_are_the_work(tmp_path: Path, model_dir: Path) -> None:
    request = _request(str(model_dir))
    base = Settings(data_dir=tmp_path / "data")
    seen = {
        _identity(request, tmp_path, base).hash,
        _identity(request, tmp_path, base.model_copy(update={"backend": "kubernetes"})).hash,
        _identity(request, tmp_path, base.model_copy(update={"backend": "kubernetes", "runner_image": "r:2"})).hash,
    }
    assert len(seen) == 3
    # An engine version without recorded stock hashes cannot name its stock datasets: unresolved, not equal.
    stock = _request(str(model_dir), datasets=["gsm8k_gen"])
    other = _identity(stock, tmp_path, base.model_copy(update={"engine_version": "9.9.9"}))
    assert other.hash is None and "no config hash recorded for OpenCompass 9.9.9" in other.unresolved[0]


def test_a_suite_is_its_datasets(tmp_path: Path, model_dir: Path) -> None:
    by_suite = _identity(_request(str(model_dir), datasets=None, suite="light"), tmp_path)
    listed = _identity(_request(str(model_dir), datasets=["tiny_mcq", "tiny_qa"]), tmp_path)
    assert by_suite.hash == listed.hash
    assert [d["name"] for d in by_suite.components["datasets"]] == ["tiny_mcq", "tiny_qa"]
    assert by_suite.components["datasets"][1]["sha256"] == DigestCache().file(BUNDLED["tiny_qa"].path)


def test_custom_dataset_content_and_whole_spec(tmp_path: Path, model_dir: Path) -> None:
    data = tmp_path / "mine.jsonl"
    data.write_text('{"question": "1+1?", "answer": "2"}\n')
    custom: dict[str, Any] = {"name": "mine", "path": str(data), "kind": "qa"}
    first = _identity(_request(str(model_dir), datasets=[custom]), tmp_path)
    spec = {"name": "mine", "kind": "qa", "scoring": "contains"}  # the default written out; the path is not the work
    assert first.components["datasets"][0]["spec"] == spec
    data.write_text('{"question": "2+2?", "answer": "4"}\n{"question": "3+3?", "answer": "6"}\n')
    changed = _identity(_request(str(model_dir), datasets=[custom]), tmp_path)
    as_mcq = _identity(_request(str(model_dir), datasets=[{**custom, "kind": "mcq"}]), tmp_path)
    assert len({first.hash, changed.hash, as_mcq.hash}) == 3 and None not in {first.hash, changed.hash}
    missing = _identity(_request(str(model_dir), datasets=[{**custom, "path": str(tmp_path / "gone.jsonl")}]), tmp_path)
    assert missing.hash is None and "custom dataset 'mine'" in missing.unresolved[0]


def test_local_folder_weights_config_tokenizer_and_template_count_readme_does_not(
    tmp_path: Path, model_dir: Path
) -> None:
    before = _identity(_request(str(model_dir)), tmp_path)
    assert sorted(before.components["model"]["files"]) == [
        "chat_template.jinja",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    (model_dir / "README.md").write_text("edited")
    assert _identity(_request(str(model_dir)), tmp_path).hash == before.hash
    seen = {before.hash}
    for name in ("model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"):
        path = model_dir / name
        st = path.stat()
        data = bytearray(path.read_bytes())
        data[0] ^= 0xFF  # retrained in place: same size, new bytes, a later mtime
        path.write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        now = _identity(_request(str(model_dir)), tmp_path)
        assert now.hash not in seen, name
        seen.add(now.hash)
    gone = _identity(_request(str(tmp_path / "nowhere")), tmp_path)
    assert gone.hash is None and "not found" in gone.unresolved[0]


def test_tokenizer_given_apart_is_part_of_the_model(tmp_path: Path, model_dir: Path) -> None:
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}")
    source = {"type": "huggingface", "path": str(model_dir), "tokenizer_path": str(tok)}
    a = _identity(_request(str(model_dir), model={"name": "m", "source": source}), tmp_path)
    (tok / "tokenizer.json").write_text('{"x": 1}')
    b = _identity(_request(str(model_dir), model={"name": "m", "source": source}), tmp_path)
    assert a.hash != b.hash and "tokenizer" in a.components["model"]


def test_hugging_face_cache_blobs_are_named_by_their_sha256(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--org--m"
    blob = "c" * 64
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / blob).write_bytes(b"weights")
    snapshot = repo / "snapshots" / COMMIT_A
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(f"../../blobs/{blob}")
    (snapshot / "config.json").write_text("{}")
    cache = DigestCache(tmp_path / "d.json")
    got = _identity(_request(str(snapshot)), tmp_path, digests=cache)
    assert got.components["model"]["files"]["model.safetensors"] == blob
    assert cache.stats.from_blob_name == 1 and cache.stats.hashed_files == 3  # config.json and the two datasets


def test_a_500_mb_model_folder_is_read_once_then_cached_by_path_size_and_mtime(tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    weights = folder / "model.safetensors"
    with weights.open("wb") as f:  # sparse: 500 MB that hashing reads, but no disk written
        f.truncate(500 * 1024 * 1024)
    cache_file = tmp_path / "digests.json"
    first = DigestCache(cache_file)
    a = _identity(_request(str(folder)), tmp_path, digests=first)
    small = sum(p.stat().st_size for p in (folder / "config.json", BUNDLED["tiny_qa"].path, BUNDLED["tiny_mcq"].path))
    assert first.stats.hashed_files == 4 and first.stats.hashed_bytes == 500 * 1024 * 1024 + small
    entry = json.loads(cache_file.read_text())[str(weights.resolve())]
    assert entry["size"] == 500 * 1024 * 1024 and entry["mtime_ns"] == weights.stat().st_mtime_ns
    again = DigestCache(cache_file)  # a new process: only the cache file is shared
    b = _identity(_request(str(folder)), tmp_path, digests=again)
    assert a.hash == b.hash and again.stats.hashed_files == 0 and again.stats.from_cache == 4
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched: read again
    third = DigestCache(cache_file)
    _identity(_request(str(folder)), tmp_path, digests=third)
    assert third.stats.hashed_files == 1 and third.stats.hashed_bytes == 500 * 1024 * 1024


class _Hub(BaseHTTPRequestHandler):
    refs: dict[str, str] = {}
    asked: list[str] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        sha = self.refs.get(self.path)
        body = json.dumps({"sha": sha} if sha else {"error": "not found"}).encode()
        self.send_response(200 if sha else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Hub]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    _Hub.refs, _Hub.asked = {}, []
    try:
        yield _Hub
    finally:
        server.shutdown()
        server.server_close()


def test_hub_revision_is_resolved_to_a_commit_and_a_moved_branch_is_new_work(tmp_path: Path, hub: type[_Hub]) -> None:
    hub.refs["/api/models/org/m/revision/main"] = COMMIT_A
    request = _request("org/m", model={"name": "m", "source": {"type": "huggingface", "path": "org/m"}})
    a = _identity(request, tmp_path)
    assert a.components["model"]["commit"] == COMMIT_A and a.hash is not None
    assert _identity(request, tmp_path).hash == a.hash and len(hub.asked) == 1  # remembered for a minute
    hub.refs["/api/models/org/m/revision/main"] = COMMIT_B
    identity_module._hub_memo.clear()
    b = _identity(request, tmp_path)
    assert b.components["model"]["commit"] == COMMIT_B and b.hash not in (None, a.hash)
    unknown = _request("org/m", model={"name": "m", "source": {"type": "huggingface", "path": "org/other"}})
    assert _identity(unknown, tmp_path).hash is None


def test_unresolvable_revision_is_never_equal(tmp_path: Path) -> None:
    moving = {"name": "m", "source": {"type": "huggingface", "path": "org/m", "revision": "main"}}
    a = _identity(_request("org/m", model=moving), tmp_path)
    assert a.hash is None and "could not be resolved" in a.unresolved[0]
    pinned = {"name": "m", "source": {"type": "huggingface", "path": "org/m", "revision": COMMIT_A}}
    b = _identity(_request("org/m", model=pinned), tmp_path, hub=lambda repo, rev: pytest.fail("not asked"))
    assert b.hash is not None and b.components["model"]["commit"] == COMMIT_A


def test_endpoint_models_are_never_reused(tmp_path: Path) -> None:
    source = {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "served"}
    got = _identity(_request("x", model={"name": "m", "source": source}), tmp_path)
    assert got.hash is None and "cannot be pinned" in got.unresolved[0]


def test_stock_dataset_by_opencompass_config_hash_and_data_files_when_present(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = stock_table()["0.5.4"]["gsm8k_gen"]
    request = _request(str(model_dir), datasets=["gsm8k_gen"])
    monkeypatch.setenv("COMPASS_DATA_CACHE", str(tmp_path / "compass"))
    absent = _identity(request, tmp_path)
    assert absent.components["datasets"][0]["config_hash"] == entry["config_hash"]
    assert absent.components["datasets"][0]["data"] == {} and absent.hash is not None
    data = tmp_path / "compass" / entry["data_paths"][0]
    data.mkdir(parents=True)
    (data / "test.jsonl").write_text('{"question": "q", "answer": "1"}\n')
    present = _identity(request, tmp_path)
    (data / "test.jsonl").write_text('{"question": "q", "answer": "22"}\n')
    changed = _identity(request, tmp_path)
    assert len({absent.hash, present.hash, changed.hash}) == 3


def test_a_path_that_is_no_hub_id_is_unresolved_not_a_crash(tmp_path: Path, hub: type[_Hub]) -> None:
    """``org/m\tx`` is no hub id (``is_hub_id``, the policy's rule) and no folder: unresolved, the hub not asked."""
    odd = {"name": "m", "source": {"type": "huggingface", "path": "org/m\tx"}}
    got = _identity(_request("x", model=odd), tmp_path)
    assert got.hash is None and "org/m\tx" in got.unresolved[0]
