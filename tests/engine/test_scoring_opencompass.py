"""Scoring through the REAL OpenCompass evaluator: configs rendered by budeval, hand-written predictions, OpenCompass
0.5.4 in its own venv run in eval mode (``-m eval``: no model is loaded), verdicts read from its results files.

Each run is one OpenCompass process with its evaluation tasks as child processes, exactly as in a real evaluation,
so these tests also prove the evaluator reaches those children (budeval is not installed in that venv).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from budeval.engine.catalog import BUNDLED
from budeval.engine.render import render_config
from budeval.schemas.request import CustomDataset, EvalRequest

OPENCOMPASS_VENV = Path(os.environ.get("BUDEVAL_CACHE") or Path.home() / ".cache" / "budeval") / "opencompass-venv"
OPENCOMPASS_PYTHON = OPENCOMPASS_VENV / "bin" / "python"

pytestmark = [
    pytest.mark.opencompass,
    pytest.mark.usefixtures("opencompass_env"),  # installs the venv on a cold machine (tests/conftest.py)
]


def request(model: str, datasets: list[Any]) -> EvalRequest:
    return EvalRequest.model_validate(
        {
            "eval_id": "scoring",
            "model": {"name": model, "source": {"type": "huggingface", "path": "/no/model/needed/in/eval/mode"}},
            "datasets": datasets,
            "resources": {"gpus": 0},
        }
    )


def evaluate(tmp: Path, config: str, predictions: dict[tuple[str, str], list[str]]) -> Path:
    """Write ``predictions[(model, dataset)]`` as OpenCompass would, run its eval step; the timestamp folder."""
    run = tmp / "work" / "20260101_000000"
    for (model, dataset), texts in predictions.items():
        folder = run / "predictions" / model
        folder.mkdir(parents=True, exist_ok=True)
        entries = {
            str(i): {"origin_prompt": [{"role": "HUMAN", "prompt": f"question {i}"}], "prediction": text, "gold": ""}
            for i, text in enumerate(texts)
        }
        (folder / f"{dataset}.json").write_text(json.dumps(entries))
    (tmp / "config.py").write_text(config)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [str(OPENCOMPASS_PYTHON), "-m", "opencompass.cli.main", "config.py", "-w", "work", "-r", run.name]
    done = subprocess.run(
        [*command, "-m", "eval", "--max-num-workers", "2"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run


def verdicts(run: Path, model: str, dataset: str) -> tuple[float, list[bool]]:
    """(accuracy, per-example ``correct``) from OpenCompass's ``results/{model}/{dataset}.json``."""
    path = run / "results" / model / f"{dataset}.json"
    assert path.is_file(), sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    result = json.loads(path.read_text())
    assert "error" not in result, result
    correct = []
    for i, item in enumerate(result["details"]):
        assert item["example_abbr"] == f"{dataset}_{i}"
        assert isinstance(item["correct"], list) and len(item["correct"]) == 1
        assert "gold" in item and "answer" in item  # written by budeval's evaluator, not a stock one
        correct.append(item["correct"][0])
    return result["accuracy"], correct


# -- the bundled datasets, as the catalog scores them ----------------------------------------------------------------
#: tiny_qa golds: 5, Paris, Blue, 8, Cold. The "right" answers are SmolLM2's own (issue 20), said in other words.
QA = {
    "right": [
        "2 + 3 = 5",
        "The capital of France is Paris.",
        "The sky on a clear day is a brilliant shade of blue.",
        "A spider has 8 legs.",
        "The opposite of hot is cold.",
    ],
    "wrong": ["2 + 3 = 6", "The capital of France is Lyon.", "It is bluish grey.", "A spider has 18 legs.", "Warm"],
    "empty": ["", "", "", "", ""],
}
#: tiny_mcq: 2+2 (B: 4), barks (C: Dog; A: Cat), capital of Japan (A: Tokyo; B: Seoul), fruit (D: Apple).
MCQ = {
    "right": ["B. 4", "A dog barks.", "The capital of Japan is Tokyo.", "The answer is D"],
    "wrong": ["A", "The cat barks.", "Seoul", "The answer is C"],
    "empty": ["", "", "", ""],
}


@pytest.fixture(scope="module")
def bundled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = render_config(request("right", ["tiny_qa", "tiny_mcq"]), ["tiny_qa", "tiny_mcq"])
    # One OpenCompass run for the three prediction sets: the same model entry under three names.
    config += "models = [dict(models[0], abbr='right'), dict(models[0], abbr='wrong'), dict(models[0], abbr='empty')]\n"
    predictions = {(model, "tiny_qa"): texts for model, texts in QA.items()}
    predictions |= {(model, "tiny_mcq"): texts for model, texts in MCQ.items()}
    return evaluate(tmp_path_factory.mktemp("bundled"), config, predictions)


@pytest.mark.parametrize("dataset", ["tiny_qa", "tiny_mcq"])
@pytest.mark.parametrize(("model", "expected"), [("right", True), ("wrong", False), ("empty", False)])
def test_bundled_dataset_verdicts(bundled_run: Path, dataset: str, model: str, expected: bool) -> None:
    accuracy, correct = verdicts(bundled_run, model, dataset)
    size = len(BUNDLED[dataset].path.read_text().splitlines())
    assert correct == [expected] * size
    assert accuracy == (100.0 if expected else 0.0)


# -- every scoring a custom dataset may name -------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    prediction: str
    gold: str
    right: bool


OPTIONS = {"A": "Cat", "B": "Cow", "C": "Dog", "D": "Fish"}
CUSTOM: dict[tuple[str, str], list[Case]] = {
    # exact stays exact: only surrounding whitespace is ignored (regression for the old whole-text comparison).
    ("qa", "exact"): [
        Case("Paris", "Paris", True),
        Case("  Paris\n", "Paris", True),
        Case("paris", "Paris", False),
        Case("Paris.", "Paris", False),
        Case("The capital of France is Paris.", "Paris", False),
        Case("", "Paris", False),
    ],
    ("qa", "normalized"): [
        Case("  PARIS! ", "paris", True),
        Case("The Eiffel Tower.", "eiffel tower", True),
        Case("It is Paris.", "Paris", False),
        Case("3.5.", "3.5", True),
        Case("35", "3.5", False),
        Case("", "Paris", False),
    ],
    ("qa", "contains"): [
        Case("A spider has 8 legs.", "8", True),
        Case("2+3=5", "5", True),
        Case("A spider has 18 legs.", "8", False),
        Case("It is 3.5", "5", False),
        Case("The answer: New York City.", "New York", True),
        Case("Newark", "New York", False),
        Case("eight", "8", False),
        Case("", "8", False),
    ],
    ("qa", r"regex:answer is (\w+)"): [
        Case("I think the answer is Paris, surely", "Paris", True),
        Case("the answer is paris", "Paris", True),
        Case("Paris", "Paris", False),
        Case("the answer is Lyon", "Paris", False),
        Case("", "Paris", False),
    ],
    ("mcq", "option"): [
        Case("(C)", "C", True),
        Case("Answer: D", "D", True),
        Case("B. Cow The answer is C. Dog.", "C", True),  # SmolLM2's habit: the final statement counts
        Case("C. Dog The answer is B. Cow.", "C", False),
        Case("C) Dog", "C", True),
        Case("I like fish", "D", True),
        Case("Cat or dog?", "C", False),
        Case("A dog", "A", False),
        Case("", "A", False),
    ],
    ("mcq", "exact"): [
        Case("B", "B", True),
        Case("B.", "B", False),
        Case("b", "B", False),
        Case("", "B", False),
    ],
}


def custom_name(kind: str, scoring: str) -> str:
    return f"{kind}_{scoring.split(':')[0]}"


@pytest.fixture(scope="module")
def custom_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("custom")
    datasets: list[dict[str, str]] = []
    predictions = {}
    for (kind, scoring), cases in CUSTOM.items():
        name = custom_name(kind, scoring)
        path = tmp / f"{name}.jsonl"
        extra = OPTIONS if kind == "mcq" else {}
        rows = [json.dumps({"question": f"q{i}", **extra, "answer": c.gold}) for i, c in enumerate(cases)]
        path.write_text("\n".join(rows) + "\n")
        datasets.append({"name": name, "path": str(path), "kind": kind, "scoring": scoring})
        predictions[("probe", name)] = [c.prediction for c in cases]
    req = request("probe", datasets)
    config = render_config(req, [d for d in req.datasets or [] if isinstance(d, CustomDataset)])
    return evaluate(tmp, config, predictions)


@pytest.mark.parametrize(("kind", "scoring"), list(CUSTOM))
def test_custom_dataset_scoring(custom_run: Path, kind: str, scoring: str) -> None:
    cases = CUSTOM[(kind, scoring)]
    accuracy, correct = verdicts(custom_run, "probe", custom_name(kind, scoring))
    assert correct == [c.right for c in cases], list(zip(cases, correct, strict=True))
    assert accuracy == pytest.approx(100.0 * sum(c.right for c in cases) / len(cases))


# -- stock configs keep their own evaluators ---------------------------------------------------------------------------
LOAD = """
import importlib.util, json, sys
from mmengine.config import Config
from opencompass.utils.run import try_fill_in_custom_cfgs
cfg = try_fill_in_custom_cfgs(Config.fromfile(sys.argv[1], format_python_code=False))
stock_file = importlib.util.find_spec('opencompass.configs.datasets.gsm8k.gsm8k_gen').origin
stock = Config.fromfile(stock_file)['gsm8k_datasets'][0]['eval_cfg']
print(json.dumps({'stock': str(stock), 'rendered': {d['abbr']: str(d['eval_cfg']) for d in cfg['datasets']}}))
"""


def test_stock_config_keeps_its_evaluator_beside_bundled_ones(tmp_path: Path) -> None:
    config = tmp_path / "config.py"
    config.write_text(render_config(request("m", ["gsm8k_gen", "tiny_qa"]), ["gsm8k_gen", "tiny_qa"]))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(OPENCOMPASS_PYTHON), "-c", LOAD, str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["rendered"]["gsm8k"] == loaded["stock"]
    assert "Gsm8kEvaluator" in loaded["stock"]
    assert "budeval_scoring.BudevalEvaluator" in loaded["rendered"]["tiny_qa"]
