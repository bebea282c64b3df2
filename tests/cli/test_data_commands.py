"""The data CLI (results, leaderboard, compare, migrate) on a real chDB store."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from budeval.errors import NotFoundError
from budeval.storage.factory import open_store
from tests.cli.support import budeval_cmd, parser, run_cli
from tests.storage.fakes import Example, MemoryRun, simple_run


def _fill(dsn: str, runs: dict[str, MemoryRun]) -> None:
    store = open_store(dsn)
    try:
        store.migrate()
        for eval_id, run in runs.items():
            store.store_run(eval_id, "r0", run)
    finally:
        store.close()


def test_migrate_applies_then_reports_up_to_date(dsn: str) -> None:
    first = json.loads(run_cli("migrate", "--store", dsn, "--json"))
    assert first["applied"] and first["version"] >= 2
    assert json.loads(run_cli("migrate", "--store", dsn, "--json"))["applied"] == []
    assert "up to date" in run_cli("migrate", "--store", dsn)


def test_results_json_has_the_contract_fields_and_null_scores(dsn: str) -> None:
    _fill(dsn, {"ev-1": simple_run("20260101_000000", {("m", "qa"): 42.5, ("m", "bad"): None})})
    rows = json.loads(run_cli("results", "ev-1", "--store", dsn, "--json"))
    by_dataset = {r["dataset"]: r for r in rows}
    assert set(by_dataset) == {"qa", "bad"}
    for row in rows:
        assert {"model", "dataset", "metric", "score", "status"} <= set(row)
    assert by_dataset["qa"]["score"] == 42.5 and by_dataset["qa"]["status"] == "ok"
    assert by_dataset["bad"]["score"] is None and by_dataset["bad"]["status"] == "missing"
    table = run_cli("results", "ev-1", "--store", dsn)
    assert "42.50" in table and "missing" in table


def test_results_with_examples_shows_each_verdict_beside_the_scores(dsn: str) -> None:
    run = simple_run("20260101_000000", {("m", "tiny_qa"): 50.0, ("m", "tiny_mcq"): 100.0})
    run.examples = [
        Example("m", "tiny_qa", 0, True, "The capital of France is Paris.", "Paris", "HUMAN: What is the capital?\n"),
        Example("m", "tiny_qa", 1, False, "A spider has 18 legs.", "8", "HUMAN: How many legs?\n"),
        Example("m", "tiny_qa", 2, None, "x" * 200, "8", "HUMAN: Unjudged?\n"),
        Example("m", "tiny_mcq", 0, True, "B", "B", "HUMAN: Question: What is 2+2?\nA. 3\nB. 4"),
    ]
    _fill(dsn, {"ev-1": run})
    text = run_cli("results", "ev-1", "--store", dsn, "--examples")
    scores, _, examples = text.partition("Per example (first 10 of each dataset):\n")
    assert "50.00" in scores and "100.00" in scores
    lines = examples.splitlines()
    assert lines[0].split() == ["dataset", "#", "question", "answer", "gold", "verdict"]
    assert lines[1].split()[:2] == ["tiny_mcq", "0"] and "Question: What is 2+2? A. 3 B. 4" in lines[1]
    assert "What is the capital?" in lines[2] and "HUMAN" not in lines[2]
    assert "The capital of France is Paris." in lines[2] and lines[2].split()[-2:] == ["Paris", "right"]
    assert lines[3].split()[-2:] == ["8", "wrong"]
    assert lines[4].split()[-1] == "-" and "x" * 45 + "..." in lines[4] and "x" * 49 not in lines[4]
    # The limit applies per dataset; JSON carries the same rows.
    assert len(run_cli("results", "ev-1", "--store", dsn, "--examples", "1").split("Per example")[1].splitlines()) == 4
    doc = json.loads(run_cli("results", "ev-1", "--store", dsn, "--examples", "2", "--json"))
    assert [r["dataset"] for r in doc["scores"]] == ["tiny_mcq", "tiny_qa"]
    assert [(e["dataset"], e["example_index"], e["correct"]) for e in doc["examples"]] == [
        ("tiny_mcq", 0, True),
        ("tiny_qa", 0, True),
        ("tiny_qa", 1, False),
    ]


def test_results_of_an_unknown_evaluation_is_not_found(dsn: str) -> None:
    args = parser().parse_args(["results", "nope", "--store", dsn])
    with pytest.raises(NotFoundError, match="nope"):
        args.func(args, io.StringIO())


def test_leaderboard_and_compare_json(dsn: str) -> None:
    _fill(
        dsn,
        {
            "ck-1": simple_run("20260101_000000", {("ckpt-1", "qa"): 60.0}, {("ckpt-1", "qa"): [True, True, False]}),
            "ck-2": simple_run("20260102_000000", {("ckpt-2", "qa"): 40.0}, {("ckpt-2", "qa"): [True, False, False]}),
        },
    )
    board = json.loads(run_cli("leaderboard", "--dataset", "qa", "--store", dsn, "--json", "--mode", "best"))
    assert [(r["rank"], r["model"], r["score"]) for r in board] == [(1, "ckpt-1", 60.0), (2, "ckpt-2", 40.0)]
    page = json.loads(
        run_cli("leaderboard", "--dataset", "qa", "--store", dsn, "--json", "--limit", "1", "--offset", "1")
    )
    assert [r["model"] for r in page] == ["ckpt-2"]
    doc = json.loads(run_cli("compare", "ck-1", "ck-2", "--examples", "--store", dsn, "--json"))
    assert doc["scores"][0]["delta"] == pytest.approx(-20.0)
    assert [(f["example_index"], f["direction"]) for f in doc["flips"]] == [(1, "correct_to_wrong")]
    assert doc["flip_summary"][0]["correct_to_wrong"] == 1
    text = run_cli("compare", "ck-1", "ck-2", "--examples", "--store", dsn)
    assert "-20.00" in text and "correct_to_wrong" in text
    args = parser().parse_args(["compare", "ck-1", "ck-9", "--store", dsn])
    with pytest.raises(NotFoundError, match="ck-9"):
        args.func(args, io.StringIO())


def test_the_budeval_command_fails_with_one_line_and_uses_env_defaults(tmp_path: Path) -> None:
    env: dict[str, Any] = {"BUDEVAL_STORE_DSN": f"chdb://{tmp_path / 'ch'}", "BUDEVAL_DATA_DIR": str(tmp_path)}
    missing = budeval_cmd("results", "nope", "--json", env=env)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().splitlines()[-1] == "budeval: error: no evaluation 'nope' in the store"
    unreachable = budeval_cmd("results", "x", "--store", "http://u:hunter2@127.0.0.1:1/db")
    assert unreachable.returncode == 1 and "hunter2" not in unreachable.stderr
    assert unreachable.stderr.strip().splitlines()[-1].startswith("budeval: error: cannot open the ClickHouse store")
    ok = budeval_cmd("migrate", "--json", env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["applied"] == []
