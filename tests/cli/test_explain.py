"""``budeval explain A B``: provenance diff before score diff, from rows the real activities wrote into real chDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from budeval.backends.base import RunState
from budeval.backends.local import LocalBackend
from budeval.config import Settings
from budeval.engine.results import parse_run
from budeval.events.publisher import MemoryPublisher
from budeval.storage.base import EvaluationRecord
from budeval.storage.explain import explain, render_explanation
from budeval.storage.factory import open_archive, open_store
from budeval.storage.queries import CompareRow
from budeval.workflow.activities import Deps, EvalActivities
from budeval.workflow.models import FinishInput, PrepareInput, RunOutcome

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "opencompass" / "qa_chat"


def _environment(torch: str) -> dict[str, Any]:
    return {
        "python": "3.11.7",
        "torch": torch,
        "cuda": "12.4",
        "gpu_names": ["NVIDIA A100"],
        "gpu_count": 1,
        "hostname": "pod-1",
        "node": "gpu-node-1",
        "captured_at": 1.0,
    }


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Two evaluations of the same model folder: B with max_out_len 128, an edited dataset, a newer torch."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\x00" * 128)
    data = tmp_path / "mine.jsonl"
    settings = Settings(data_dir=tmp_path / "data")
    store = open_store(settings.resolved_store_dsn())
    store.migrate()
    deps = Deps(
        settings=settings,
        backend=LocalBackend(settings),
        store=store,
        archive=open_archive(settings.resolved_archive_url()),
        publisher=MemoryPublisher(),
        parse=parse_run,
    )
    acts = EvalActivities(deps)
    now = datetime.now(UTC).isoformat()
    try:
        for eval_id, max_out_len, content, torch in (("ex-a", 64, "1", "2.4.0"), ("ex-b", 128, "22", "2.5.1")):
            data.write_text(json.dumps({"question": "q", "answer": content}) + "\n")
            request = {
                "eval_id": eval_id,
                "model": {"name": "m", "source": {"type": "huggingface", "path": str(model)}},
                "datasets": [{"name": "mine", "path": str(data)}, "tiny_qa"],
                "generation": {"max_out_len": max_out_len},
                "split": "single",
            }
            prepared = acts.prepare_evaluation(None, PrepareInput(request=request, started_at=now).model_dump())
            validated = prepared["validated"]
            store.store_run(eval_id, "r0", parse_run(FIXTURE))
            state = RunState(eval_id=eval_id, run_id="r0", phase="succeeded")
            run = RunOutcome(
                run_id="r0",
                datasets=["mine", "tiny_qa"],
                state=state,
                environment=_environment(torch),
                opencompass_version="0.5.4",
            )
            acts.finish_evaluation(
                FinishInput.model_validate(
                    {
                        "validated": validated,
                        "outcome": "completed",
                        "runs": [run.model_dump()],
                        "archive_url": None,
                        "reason": None,
                        "started_at": now,
                        "finished_at": now,
                        "config_hashes": prepared["rendered"]["config_hashes"],
                    }
                )
            )
    finally:
        store.close()
    return {"dsn": settings.resolved_store_dsn(), "environ": dict(os.environ, BUDEVAL_DATA_DIR=str(tmp_path / "data"))}


def _explain(stored: dict[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "budeval.cli.main", "explain", *flags, "--store", stored["dsn"]]
    return subprocess.run(argv, capture_output=True, text=True, env=stored["environ"], timeout=120)


def test_explain_names_what_changed_and_what_did_not_before_the_scores(stored: dict[str, Any]) -> None:
    done = _explain(stored, "ex-a", "ex-b", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    notes = [d["note"] for d in doc["differences"]]
    assert doc["same_work"] is False and doc["identity"]["a"] != doc["identity"]["b"]
    assert "max_out_len 64 -> 128" in notes
    assert "dataset mine content changed" in notes and not any("tiny_qa" in n for n in notes)
    assert "environment.torch 2.4.0 -> 2.5.1" in notes and "rendered OpenCompass configs differ" in notes
    assert any(s.startswith("same model commit sha256:") for s in doc["same"])
    assert "same OpenCompass 0.5.4" in doc["same"] and "same GPU 1 x NVIDIA A100" in doc["same"]
    assert doc["scores"] and all(r["delta"] == 0 for r in doc["scores"] if r["delta"] is not None)
    text = _explain(stored, "ex-a", "ex-b")
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert out.index("max_out_len 64 -> 128") < out.index("scores (B - A):")
    assert "different work" in out.splitlines()[0] and "same model commit" in out


def test_explain_of_an_unknown_evaluation_is_an_error(stored: dict[str, Any]) -> None:
    done = _explain(stored, "ex-a", "nope")
    assert (
        done.returncode == 1
        and done.stderr.strip().splitlines()[-1] == "budeval: error: no evaluation 'nope' in the store"
    )


def test_a_reused_evaluation_is_the_same_work() -> None:
    identity = {"datasets": [{"name": "d", "kind": "bundled", "sha256": "x"}], "generation": {"max_out_len": 64}}
    base = {
        "status": "completed",
        "params_hash": "h",
        "model_commit": "c" * 40,
        "engine_version": "0.5.4",
        "provenance": {"identity": identity},
    }
    a = EvaluationRecord(eval_id="a", **base)
    b = EvaluationRecord(eval_id="b", reused_from="a", **{**base, "status": "reused"})
    row = CompareRow(
        model_a="m",
        model_b="m",
        dataset="d",
        metric="accuracy",
        score_a=50.0,
        score_b=50.0,
        delta=0.0,
        status_a="ok",
        status_b="ok",
    )
    doc = explain(a, b, [row])
    assert doc["same_work"] is True and doc["differences"] == []
    assert {"same dataset contents (d)", "same generation settings", "b reused the other's scores"} <= set(doc["same"])
    assert "the same work" in render_explanation(doc).splitlines()[0]
