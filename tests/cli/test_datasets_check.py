"""``budeval datasets check``: a folder with and without the data files of a suite's stock datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from budeval.engine.identity import stock_table
from tests.cli.support import budeval_cmd, run_cli

STANDARD = ["gsm8k_gen", "mmlu_gen", "ARC_c_gen", "hellaswag_gen", "triviaqa_gen"]


def fill(root: Path, names: list[str]) -> None:
    """The recorded data paths of ``names`` as files (a path ending in .jsonl) or folders holding one file."""
    for name in names:
        for rel in stock_table()["0.5.4"][name]["data_paths"]:
            where = root / rel
            if where.suffix in (".jsonl", ".json", ".csv"):
                where.parent.mkdir(parents=True, exist_ok=True)
                where.write_text("{}\n")
            else:
                where.mkdir(parents=True, exist_ok=True)
                (where / "test.jsonl").write_text("{}\n")


def test_a_full_folder_passes(tmp_path: Path) -> None:
    fill(tmp_path, STANDARD)
    out = run_cli("datasets", "check", "--suite", "standard", "--root", str(tmp_path))
    assert "suite standard" in out
    assert out.count(" ok ") == len(STANDARD)
    assert "data/gsm8k" in out and "data/ARC/ARC-c/ARC-Challenge-Dev.jsonl" in out


def test_missing_files_are_named_and_fail(tmp_path: Path) -> None:
    fill(tmp_path, [n for n in STANDARD if n not in ("mmlu_gen", "ARC_c_gen")])
    (tmp_path / "data" / "mmlu").mkdir(parents=True)  # an empty folder is not the data
    done = budeval_cmd("datasets", "check", "--suite", "standard", "--root", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"budeval: error: suite standard: missing under {tmp_path}: data/ARC/ARC-c/ARC-Challenge-Dev.jsonl, data/mmlu"
    ]
    lines = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert "missing" in lines["mmlu_gen"] and "missing" in lines["ARC_c_gen"]
    assert " ok " in lines["gsm8k_gen"]


def test_json_and_root_from_compass_data_cache(tmp_path: Path) -> None:
    fill(tmp_path, ["gsm8k_gen"])
    done = budeval_cmd("datasets", "check", "--dataset", "gsm8k_gen", "--dataset", "bbh_gen", "--json",
                       env={"COMPASS_DATA_CACHE": str(tmp_path)})
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["root"] == str(tmp_path) and doc["ok"] is False and doc["missing"] == ["data/BBH/data"]
    assert [(d["name"], d["ok"]) for d in doc["datasets"]] == [("gsm8k_gen", True), ("bbh_gen", False)]


def test_bundled_datasets_need_nothing(tmp_path: Path) -> None:
    out = run_cli("datasets", "check", "--suite", "light", "--root", str(tmp_path))
    assert out.count("  bundled  ") == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--suite", "nope", "--root", "/"], "no suite 'nope'"),
        (["--dataset", "not_a_dataset", "--root", "/"], "unknown datasets"),
        (["--suite", "light"], "give --root or set COMPASS_DATA_CACHE"),
    ],
    ids=["unknown-suite", "unknown-dataset", "no-root"],
)
def test_bad_input_is_one_error_line(argv: list[str], message: str, tmp_path: Path) -> None:
    done = budeval_cmd("datasets", "check", *argv, env={"COMPASS_DATA_CACHE": ""})
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_a_root_that_is_not_a_folder(tmp_path: Path) -> None:
    done = budeval_cmd("datasets", "check", "--suite", "light", "--root", str(tmp_path / "absent"))
    assert done.returncode == 1 and "is not a folder" in done.stderr
