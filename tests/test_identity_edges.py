"""Edge cases of the identity of work (issue 12): stale and missed reuse, ``plan``/``explain`` messages, reused rows.

Taken from a breaker's defect report (tests/test_breaker12.py on the breaker12 branch); where an expectation was
debatable the decision is in docs/workflow.md "The same work" and the assertion follows it. The identity tests call
``compute_identity`` and ``render_config`` directly; the CLI tests run ``budeval`` as a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from budeval.config import Settings
from budeval.engine import identity as identity_module
from budeval.engine.digests import DigestCache
from budeval.engine.identity import Identity, compute_identity
from budeval.engine.render import render_config
from budeval.policy.paths import is_hub_id
from budeval.schemas.request import EvalRequest
from budeval.storage.base import EvaluationRecord
from budeval.storage.explain import explain

OC_PYTHON = Path(
    os.environ.get("BUDEVAL_OPENCOMPASS_PYTHON", str(Path.home() / ".cache/budeval/opencompass-venv/bin/python"))
)
SUITES = {"light": ["tiny_qa", "tiny_mcq"]}
COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


# == identity (issue 12) ===============================================================================================
@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    identity_module._hub_memo.clear()


def _request(source: dict[str, Any], **extra: Any) -> EvalRequest:
    body: dict[str, Any] = {
        "eval_id": "e1",
        "model": {"name": "m", "source": {"type": "huggingface", **source}},
        "datasets": ["tiny_qa"],
    }
    return EvalRequest.model_validate({**body, **extra})


def _identity(request: EvalRequest, tmp_path: Path, hub: Any = None, settings: Settings | None = None) -> Identity:
    return compute_identity(
        request,
        SUITES,
        settings or Settings(data_dir=tmp_path / "data"),
        digests=DigestCache(tmp_path / "digests.json"),
        hub=hub or (lambda repo, rev: COMMIT_B),
    )


def _model_block(text: str) -> str:
    """The ``models = [...]`` part of a rendered config: what OpenCompass loads and how."""
    return text[text.index("models = [") : text.index("datasets = [")]


def test_tokenizer_path_equal_to_path_is_the_models_own_tokenizer_pinned_at_its_revision(tmp_path: Path) -> None:
    """STALE REUSE (breaker 12). ``{path: org/m, revision: <sha A>}`` and the same with ``tokenizer_path: org/m``
    had the same identity, but render.py passed the revision to the tokenizer only when tokenizer_path was None: the
    second loaded its tokenizer (and chat template) from the moving 'main'. Decided (docs/workflow.md "The same
    work"): a tokenizer_path naming the model's own place is the model's tokenizer, so both render the tokenizer at
    sha A -- the same config, the same identity (the breaker expected different configs and hashes)."""
    a = _request({"path": "org/m", "revision": COMMIT_A})
    b = _request({"path": "org/m", "revision": COMMIT_A, "tokenizer_path": "org/m"})
    block_a, block_b = _model_block(render_config(a, ["tiny_qa"])), _model_block(render_config(b, ["tiny_qa"]))
    assert f"tokenizer_kwargs=dict(revision={COMMIT_A!r}" in block_b
    assert block_a == block_b
    ia, ib = _identity(a, tmp_path), _identity(b, tmp_path)
    assert ia.hash is not None and ib.hash is not None
    assert ia.hash == ib.hash
    other = _request({"path": "org/m", "revision": COMMIT_A, "tokenizer_path": "org/tok"})
    assert f"tokenizer_kwargs=dict(revision={COMMIT_A!r}" not in _model_block(render_config(other, ["tiny_qa"]))
    assert _identity(other, tmp_path).hash != ia.hash  # another tokenizer, at its own (resolved) revision


def test_seed_is_identity_but_never_reaches_opencompass(tmp_path: Path) -> None:
    """MISSED REUSE (and a seed that does nothing). ``generation.seed`` is part of the identity, but render.py never
    writes it into the config (and nothing else passes it on): seeds 0 and 1 render byte-identical configs, compute
    the same thing, yet hash differently. Either the seed reaches OpenCompass or it is not the work."""
    a = _request({"path": "org/m", "revision": COMMIT_A}, generation={"seed": 0})
    b = _request({"path": "org/m", "revision": COMMIT_A}, generation={"seed": 1})
    assert render_config(a, ["tiny_qa"]) == render_config(b, ["tiny_qa"])
    assert _identity(a, tmp_path).hash == _identity(b, tmp_path).hash


def test_a_branch_and_the_commit_it_resolves_to_are_the_same_work(tmp_path: Path) -> None:
    """MISSED REUSE. ``revision: main`` resolved to sha A and ``revision: <sha A>`` load the same weights; the
    identity keeps the branch name beside the commit, so they hash differently (and a short sha differs from its
    full form). The issue: "hub id + revision resolved to a commit sha"."""
    a = _request({"path": "org/m", "revision": "main"})
    b = _request({"path": "org/m", "revision": COMMIT_A})
    ia = _identity(a, tmp_path, hub=lambda repo, rev: COMMIT_A)
    ib = _identity(b, tmp_path, hub=lambda repo, rev: COMMIT_A)
    assert ia.hash is not None
    assert ia.hash == ib.hash


def _model_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "tokenizer.json").write_text('{"vocab": {}}')
    (folder / "model.safetensors").write_bytes(b"\x01" * 64)
    return folder


def test_weights_that_cannot_be_read_make_the_identity_unresolved(tmp_path: Path) -> None:
    """STALE REUSE / "unresolvable must never be equal". A model folder whose ``model.safetensors`` is a dangling
    link (a Hugging Face cache snapshot whose blob is missing or not mounted where the service runs) is silently
    skipped by ``p.is_file()``: the identity is computed from config and tokenizer alone, resolved, and two folders
    linking to DIFFERENT weight blobs get the SAME hash. Expected: unresolved (or at least different)."""
    idents = []
    for name, blob in (("one", "1" * 64), ("two", "2" * 64)):
        folder = tmp_path / "models" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"model_type": "llama"}')
        (folder / "tokenizer.json").write_text('{"vocab": {}}')
        (folder / "model.safetensors").symlink_to(tmp_path / "blobs" / blob)
        idents.append(_identity(_request({"path": str(folder)}), tmp_path))
    one, two = idents
    assert one.hash is None or one.hash != two.hash, one.components["model"]


_META_PROBE = """
import json, sys
from opencompass.datasets.custom import make_custom_dataset_config
cfg = make_custom_dataset_config(dict(abbr='d', path=sys.argv[1], data_type='qa', infer_method='gen'))
print('BREAKER12' + json.dumps(cfg['reader_cfg'], default=str))
"""


def test_custom_datasets_meta_file_is_part_of_the_work(tmp_path: Path) -> None:
    """STALE REUSE. OpenCompass completes a custom dataset from ``<path>.meta.json`` when that file exists
    (opencompass/datasets/custom.py ``parse_example_dataset``: ``meta_path = path + '.meta.json'``): its
    ``template``, ``human_prompt``, ``bot_prompt``, ``input_columns`` and ``test_range`` change the prompts and the
    examples evaluated. The identity digests only the ``.jsonl`` bytes, so adding or editing the meta file (here:
    evaluate only the first example) keeps the hash and the next request reuses the old scores."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "2+3?", "answer": "5"}\n{"question": "1+1?", "answer": "2"}\n')
    req = _request({"path": "org/m", "revision": COMMIT_A}, datasets=[{"name": "d", "path": str(data)}])
    before = _identity(req, tmp_path)
    (tmp_path / "d.jsonl.meta.json").write_text('{"test_range": "[0:1]"}')
    if OC_PYTHON.exists():  # the real OpenCompass reads the meta file: the work did change
        out = subprocess.run(
            [str(OC_PYTHON), "-c", _META_PROBE, str(data)], capture_output=True, text=True, timeout=300, check=True
        ).stdout
        reader = json.loads(next(x for x in out.splitlines() if x.startswith("BREAKER12"))[len("BREAKER12") :])
        assert reader.get("test_range") == "[0:1]"
    after = _identity(req, tmp_path)
    assert before.hash is not None
    assert before.hash != after.hash


def test_relative_hub_id_is_not_a_folder_of_the_services_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """STALE REUSE. ``path: org/m`` is a hub id for the policy (``is_hub_id``) and for OpenCompass (which runs with
    cwd ``.budeval/`` of the run). But ``is_local_path`` calls it a local folder when ``org/m`` happens to exist in
    the *service's* cwd, so the identity pins those files while the run downloads the hub's moving 'main'.
    Expected: a hub identity (kind 'hub', revision resolved)."""
    _model_folder(tmp_path / "cwd" / "org" / "m")
    monkeypatch.chdir(tmp_path / "cwd")
    assert is_hub_id("org/m")
    ident = _identity(_request({"path": "org/m"}), tmp_path)
    assert ident.components["model"]["kind"] == "hub"


def test_tokenizer_path_spelled_with_a_trailing_slash_is_the_same_folder(tmp_path: Path) -> None:
    """MISSED REUSE. ``tokenizer_path: /models/m/`` is the model folder itself (the same files are read); it is
    compared to ``path`` as a string, so it is digested again as a separate tokenizer and the hash differs from the
    request without tokenizer_path."""
    folder = _model_folder(tmp_path / "models" / "m")
    a = _request({"path": str(folder)})
    b = _request({"path": str(folder), "tokenizer_path": f"{folder}/"})
    assert _identity(a, tmp_path).hash == _identity(b, tmp_path).hash


def test_same_dataset_bytes_at_another_path_are_the_same_work(tmp_path: Path) -> None:
    """MISSED REUSE (low). A custom dataset copied (or mounted) at another path, same name, kind, scoring and bytes,
    computes the same scores; the identity includes the path through the whole spec, so it is never reused."""
    rows = '{"question": "2+3?", "answer": "5"}\n'
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x" / "d.jsonl").write_text(rows)
    (tmp_path / "y" / "d.jsonl").write_text(rows)
    a = _request({"path": "org/m", "revision": COMMIT_A}, datasets=[{"name": "d", "path": str(tmp_path / "x/d.jsonl")}])
    b = _request({"path": "org/m", "revision": COMMIT_A}, datasets=[{"name": "d", "path": str(tmp_path / "y/d.jsonl")}])
    assert _identity(a, tmp_path).hash == _identity(b, tmp_path).hash


def test_local_opencompass_venv_is_part_of_the_engine(tmp_path: Path) -> None:
    """STALE REUSE. Locally the engine is ``{version: settings.engine_version (a constant default '0.5.4'),
    runner: 'local-venv'}``: neither depends on the interpreter that runs OpenCompass. Pointing
    BUDEVAL_OPENCOMPASS_PYTHON at another (upgraded) venv keeps the identity, so its runs reuse the old engine's
    scores (provenance records the version that actually ran only after running). Expected: the engine component
    reflects the venv actually used."""
    req = _request({"path": "org/m", "revision": COMMIT_A})
    a = _identity(
        req, tmp_path, settings=Settings(data_dir=tmp_path / "d", opencompass_python="/venv-0.5.4/bin/python")
    )
    b = _identity(
        req, tmp_path, settings=Settings(data_dir=tmp_path / "d", opencompass_python="/venv-0.6.0/bin/python")
    )
    assert a.hash != b.hash


def _venv(root: Path, *dists: str) -> str:
    """A venv as the identity sees it: ``bin/python`` and ``lib/python3.11/site-packages/<dist>.dist-info``."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").write_text("")
    site = root / "lib" / "python3.11" / "site-packages"
    for dist in dists:
        (site / f"{dist}.dist-info").mkdir(parents=True)
    return str(root / "bin" / "python")


def test_the_venvs_installed_packages_are_the_engine_not_its_path(tmp_path: Path) -> None:
    """Locally the engine is the OpenCompass venv actually used: its installed distributions (``pip freeze``'s list,
    read from the ``*.dist-info`` folder names) and the OpenCompass version found there. An upgraded venv is other
    work; the same packages in a venv at another path are the same work."""
    req = _request({"path": "org/m", "revision": COMMIT_A})

    def ident(python: str) -> Identity:
        return _identity(req, tmp_path, settings=Settings(data_dir=tmp_path / "d", opencompass_python=python))

    old = ident(_venv(tmp_path / "v1", "opencompass-0.5.4", "torch-2.4.0"))
    moved = ident(_venv(tmp_path / "v2", "opencompass-0.5.4", "torch-2.4.0"))
    upgraded = ident(_venv(tmp_path / "v3", "opencompass-0.5.4", "torch-2.5.1"))
    newer = ident(_venv(tmp_path / "v4", "opencompass-0.6.0", "torch-2.4.0"))
    assert old.components["engine"]["opencompass"] == "0.5.4" and "python" not in old.components["engine"]
    assert newer.components["engine"]["opencompass"] == "0.6.0"
    assert old.hash is not None and old.hash == moved.hash
    assert len({old.hash, upgraded.hash, newer.hash}) == 3


def test_a_meta_file_that_cannot_be_read_makes_the_identity_unresolved(tmp_path: Path) -> None:
    """``<path>.meta.json`` is part of the work: one the service cannot read (a dangling link) is unresolved."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "2+3?", "answer": "5"}\n')
    (tmp_path / "d.jsonl.meta.json").symlink_to(tmp_path / "gone.json")
    req = _request({"path": "org/m", "revision": COMMIT_A}, datasets=[{"name": "d", "path": str(data)}])
    got = _identity(req, tmp_path)
    assert got.hash is None and "meta file" in got.unresolved[0]


# == CLI (plan / explain) ==============================================================================================
def _cli(argv: list[str], env_dir: Path) -> tuple[int, str, str]:
    """``budeval ARGV`` as a user runs it (a child process: the logger binds to the real stderr)."""
    env = {**os.environ, "BUDEVAL_DATA_DIR": str(env_dir / "data")}
    env.pop("BUDEVAL_STORE_DSN", None)
    budeval = Path(sys.executable).with_name("budeval")
    proc = subprocess.run([str(budeval), *argv], capture_output=True, text=True, env=env, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def fresh_env(tmp_path: Path) -> Path:
    return tmp_path


def test_plan_rejection_is_one_line_on_a_fresh_install(fresh_env: Path) -> None:
    """The CLI contract (budeval/cli/main.py): a failing command prints exactly one line ``budeval: error: ...``.
    A newcomer's first ``budeval plan bad.json`` also creates and migrates the default store (a plan "starts
    nothing") and prints a JSON log line ("migrations applied") before the error."""
    bad = fresh_env / "bad.json"
    bad.write_text("[]")
    code, _, err = _cli(["plan", str(bad)], fresh_env)
    assert code == 1
    assert err.strip().splitlines() == [err.strip().splitlines()[-1]], err
    assert err.startswith("budeval: error:")


def test_explain_unknown_ids_is_one_line_on_a_fresh_install(fresh_env: Path) -> None:
    """Same contract for ``budeval explain A B`` of ids that do not exist: one line, not a migration log first."""
    code, _, err = _cli(["explain", "nope-a", "nope-b"], fresh_env)
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err


def test_explain_with_an_unreachable_store_is_one_line(fresh_env: Path) -> None:
    """``budeval explain A B --store http://127.0.0.1:9/db`` (a ClickHouse that is down): the driver's own log lines
    ("Retrying (Retry(total=0 ...", "Unexpected Http Driver Exception") are printed before budeval's error: three
    lines for one failure. Expected: exactly the one ``budeval: error: ...`` line, exit 1."""
    code, _, err = _cli(["explain", "a", "b", "--store", "http://127.0.0.1:9/db"], fresh_env)
    assert code == 1
    assert err.strip().splitlines() == [err.strip().splitlines()[-1]], err


def test_plan_unknown_suite_reason_names_the_field_once(fresh_env: Path) -> None:
    """Cosmetic: ``budeval: error: rejected: suite: suite: unknown suite 'nosuch' ...`` -- the field is printed
    twice (admission's reason already carries it). Expected: "rejected: suite: unknown suite 'nosuch' ..."."""
    req = fresh_env / "r.json"
    req.write_text(
        json.dumps(
            {
                "eval_id": "e1",
                "model": {"name": "m", "source": {"type": "huggingface", "path": "org/m"}},
                "suite": "nosuch",
            }
        )
    )
    code, _, err = _cli(["plan", str(req), "--no-store"], fresh_env)
    assert code == 1
    assert "suite: suite:" not in err, err


# == explain ===========================================================================================================
def _record(eval_id: str, ident: Identity) -> EvaluationRecord:
    """A stored row as the workflow writes it: the identity hash and its components in provenance."""
    return EvaluationRecord(
        eval_id=eval_id,
        status="completed",
        params_hash=ident.hash or "",
        model_source="org/m",
        model_revision=COMMIT_A,
        model_commit=COMMIT_A,
        engine_version="0.5.4",
        provenance={"identity": ident.components, "params_hash": ident.hash or ""},
    )


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"mode": "base"}, id="chat-to-base"),
        pytest.param({"tokenizer_path": "org/other-tokenizer"}, id="tokenizer-given-apart"),
    ],
)
def test_explain_names_what_made_the_work_different(tmp_path: Path, change: dict[str, Any]) -> None:
    """``budeval explain A B`` of two evaluations whose identities differ because A ran the model in chat mode and
    B in base mode (or B used another tokenizer) says "different work" and then "no difference recorded": the model
    comparison looks at the commit, source, revision and folder files only, never at ``mode`` or ``tokenizer``. Any
    resolved identity difference must appear among the differences (the issue: "the provenance diff ... before the
    score diff")."""
    base = {"path": "org/m", "revision": COMMIT_A}
    ia = _identity(_request(base), tmp_path)
    ib = _identity(_request({**base, **change}), tmp_path)
    assert ia.hash is not None and ib.hash is not None and ia.hash != ib.hash
    doc = explain(_record("a", ia), _record("b", ib), [])
    assert doc["same_work"] is False
    assert doc["differences"], "different work, but no difference named"


# == reused evaluations' rows ==========================================================================================
def test_a_reused_evaluation_shows_its_per_example_verdicts(tmp_path: Path) -> None:
    """A reused evaluation "has its own score rows" so ``budeval results`` shows it -- but ``copy_results`` copies
    scores and dataset statuses only, not predictions: ``budeval results REUSED --examples`` (the per-example
    verdicts issue 20 puts beside every score) prints no example, and ``budeval compare ORIG REUSED --examples``
    has nothing to compare. Expected: the reused evaluation lists the same examples (under its own id/model)."""
    from budeval.storage.factory import open_store
    from tests.storage.fakes import simple_run

    store = open_store(f"chdb://{tmp_path / 'ch'}")
    try:
        store.migrate()
        run = simple_run("20261123_081443", {("m", "a"): 50.0}, {("m", "a"): [True, False]})
        store.store_run("orig", "r0", run)
        store.record_evaluation(EvaluationRecord(eval_id="orig", status="completed", model_name="m"))
        assert len(store.examples("orig")) == 2
        store.copy_results("orig", "again", "m2")
        store.record_evaluation(EvaluationRecord(eval_id="again", status="reused", model_name="m2", reused_from="orig"))
        assert [r.score for r in store.results("again")] == [50.0]  # scores were copied ...
        assert len(store.examples("again")) == 2  # ... the verdicts behind them were not
    finally:
        store.close()


def test_explain_of_unresolved_identities_does_not_claim_different_work(tmp_path: Path) -> None:
    """Two evaluations of the same endpoint model with the same datasets and settings have unresolved identities
    (the served weights cannot be pinned). "Unresolvable" means *unknown*, yet ``budeval explain`` prints
    "a -> b: different work" -- a claim nobody can make. Expected: the verdict says the identity is unresolved
    (neither "the same work" nor "different work")."""
    from budeval.storage.explain import render_explanation

    req = EvalRequest.model_validate(
        {
            "eval_id": "e1",
            "model": {"name": "m", "source": {"type": "openai", "base_url": "http://h:8000/v1", "model": "x"}},
            "datasets": ["tiny_qa"],
        }
    )
    ident = _identity(req, tmp_path)
    assert ident.hash is None
    text = render_explanation(explain(_record("a", ident), _record("b", ident), []))
    assert "different work" not in text.splitlines()[0], text.splitlines()[0]
