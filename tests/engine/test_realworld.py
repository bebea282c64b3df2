"""Real-world OpenCompass output variants (``tests/fixtures/realworld/``): each case's ``expected.txt`` is what the
assertions below check, read by the real reader (and, for the comparisons, stored in a real chDB and compared).

The cases are copied from ``shared/fixtures/realworld`` (real SmolLM2 runs rearranged into the layouts people report)
plus this repo's own cases built from OpenCompass 0.5.4's code paths (see that folder's README)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from budeval.engine.results import parse_run
from budeval.errors import NoSummaryError
from budeval.schemas.results import DatasetStatus, MetricRow, PredictionBatch
from budeval.storage.factory import open_store

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "realworld"
MODEL = "smollm2-135m-instruct"


def case(name: str, tmp_path: Path, run: str = "run") -> Path:
    """A copy of the case's run folder (the reader must never need to write, but tests may damage copies)."""
    dest = tmp_path / name / run
    shutil.copytree(CASES / name / run, dest, symlinks=True)
    return dest


def predictions(work: Path) -> PredictionBatch:
    out = PredictionBatch()
    for batch in parse_run(work, workers=0).prediction_batches(batch_size=3):
        for name in PredictionBatch.__slots__:
            getattr(out, name).extend(getattr(batch, name))
    return out


def scores(work: Path) -> dict[tuple[str, str, str], MetricRow]:
    return {(m.model, m.dataset, m.metric): m for m in parse_run(work).metrics}


def statuses(work: Path) -> dict[tuple[str, str], DatasetStatus]:
    return {(s.model, s.dataset): s for s in parse_run(work).statuses}


def test_nan_score_is_a_failed_metric_and_the_rest_is_kept(tmp_path: Path) -> None:
    work = case("nan-score", tmp_path)
    rows, state = scores(work), statuses(work)
    assert rows[(MODEL, "tiny_qa", "accuracy")].score == 0.0 and state[(MODEL, "tiny_qa")].status == "ok"
    auc = rows[(MODEL, "tiny_mcq", "auc_score")]
    assert auc.score is None and "NaN" in (auc.reason or "")
    assert state[(MODEL, "tiny_mcq")].status == "failed" and "NaN" in (state[(MODEL, "tiny_mcq")].reason or "")
    assert len(predictions(work)) == 9


def test_subjective_all_results_with_its_judge(tmp_path: Path) -> None:
    work = case("subjective-all-results", tmp_path)
    run = parse_run(work)
    rows = {(m.model, m.dataset, m.metric): m for m in run.metrics}
    expected = {"total": 33.33, "helpful_base": 100.0, "koala": 0.0, "vicuna": 0.0}
    for metric, value in expected.items():
        row = rows[(MODEL, "AlpacaEval", metric)]
        assert row.score == value and row.judge == "judge-model"
    assert run.facts.judges == ["judge-model"] and run.facts.summary_file is not None
    batch = predictions(work)
    assert batch.dataset.count("alpaca_eval") == 3
    assert {s.status for s in run.statuses} == {"ok"}


def test_needlebench_layout(tmp_path: Path) -> None:
    work = case("needlebench-layout", tmp_path)
    rows, state = scores(work), statuses(work)
    en = [m for m in rows.values() if m.dataset == "needlebench_origin_en_4k"]
    assert [(m.model, m.score) for m in en] == [(MODEL, 40.0)] and state[
        (MODEL, "needlebench_origin_en_4k")
    ].status == "ok"
    zh = [m for m in rows.values() if m.dataset == "needlebench_origin_zh_4k"]
    assert [m.score for m in zh] == [None] and state[(MODEL, "needlebench_origin_zh_4k")].status == "failed"
    assert {d for _, d in state} == {"needlebench_origin_en_4k", "needlebench_origin_zh_4k"}  # no divider, no header
    assert len(predictions(work)) == 5


def test_is_correct_verdicts_of_code_datasets(tmp_path: Path) -> None:
    a, b = (
        predictions(case("humaneval-is-correct", tmp_path)),
        predictions(case("humaneval-is-correct", tmp_path, "run_b")),
    )
    assert a.example_index == [0, 1, 2, 3, 4]
    assert a.correct == [True, False, True, False, False]
    flips = {i: (x, y) for i, x, y in zip(a.example_index, a.correct, b.correct, strict=True) if x != y}
    assert flips == {0: (True, False), 4: (False, True)}


def test_replicas_are_rows_of_their_own(tmp_path: Path) -> None:
    work = case("n-replicas", tmp_path)
    rows = scores(work)
    assert len([k for k in rows if k[1] == "tiny_mcq"]) == 13 and {m.score for m in rows.values()} == {25.0}
    assert statuses(work)[(MODEL, "tiny_mcq")].status == "ok"
    batch = predictions(work)
    assert len(batch) == 8
    assert batch.example_index == [0, 1, 2, 3, 0, 1, 2, 3] and batch.replica == [0, 0, 0, 0, 1, 1, 1, 1]
    assert batch.correct == [False, False, False, True] * 2


def test_results_error_is_the_failure_reason(tmp_path: Path) -> None:
    work = case("results-error-dict", tmp_path)
    state = statuses(work)[(MODEL, "humanevalx-python")]
    assert state.status == "failed" and (state.reason or "").startswith("code eval service connection failed: ")
    assert [m.score for m in parse_run(work).metrics] == [None]
    assert len(predictions(work)) == 5


def test_the_newest_folder_is_the_run_even_without_a_summary(tmp_path: Path) -> None:
    work = case("newest-run-summarizer-crashed", tmp_path)
    run = parse_run(work)
    assert run.facts.timestamp == "20261130_090000" and run.facts.summary_file is None
    assert [(m.dataset, m.metric, m.score) for m in run.metrics] == [("tiny_mcq", "accuracy", 25.0)]
    assert len(predictions(work)) == 4
    # without its results too, it is still the run: its dataset failed, its predictions kept, never the older run
    shutil.rmtree(work / "20261130_090000" / "results")
    run = parse_run(work)
    assert run.facts.timestamp == "20261130_090000" and [(s.dataset, s.status) for s in run.statuses] == [
        ("tiny_mcq", "failed")
    ]
    assert len(predictions(work)) == 4
    # and with nothing scored or predicted at all, the error names the newest folder
    shutil.rmtree(work / "20261130_090000" / "predictions")
    with pytest.raises(NoSummaryError, match="20261130_090000"):
        parse_run(work)


def test_group_average_duplicate(tmp_path: Path) -> None:
    work = case("group-average-duplicate", tmp_path)
    rows = {(k[1], k[2]): m.score for k, m in scores(work).items()}
    assert rows == {
        ("tiny_qa", "accuracy"): 0.0,
        ("tiny_mcq", "accuracy"): 25.0,
        ("tiny", "accuracy"): 12.5,
        ("tiny", "naive_average"): 12.5,
    }
    assert {s.status for s in statuses(work).values()} == {"ok"}
    batch = predictions(work)
    assert len(batch) == 9 and "tiny" not in batch.dataset
    assert [c for d, c in zip(batch.dataset, batch.correct, strict=True) if d == "tiny_mcq"] == [
        False,
        False,
        False,
        True,
    ]


def test_dataset_abbr_with_a_slash(tmp_path: Path) -> None:
    work = case("dataset-abbr-slash", tmp_path)
    rows = {(k[1], k[2]): m.score for k, m in scores(work).items()}
    assert rows == {("cibench_generation/pandas", "accuracy"): 0.0, ("cibench_generation", "naive_average"): 0.0}
    assert {s.status for s in statuses(work).values()} == {"ok"}
    batch = predictions(work)
    assert batch.dataset == ["cibench_generation/pandas"] * 5


def _abspath_case(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "model-abbr-abspath"
    shutil.copytree(CASES / "model-abbr-abspath", root)
    for path in root.rglob("*"):
        if path.is_file() and b"/srv/evals/model-abbr-abspath" in path.read_bytes():
            path.write_bytes(path.read_bytes().replace(b"/srv/evals/model-abbr-abspath", str(root).encode()))
    return root / "run", root / "outside" / "SmolLM2-135M-Instruct"


def test_an_absolute_model_abbr_is_refused_not_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work, outside = _abspath_case(tmp_path)
    opened: list[str] = []
    real_open = Path.open

    def spy(self: Path, *args: object, **kwargs: object) -> object:
        opened.append(str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", spy)
    run = parse_run(work)
    [row] = run.metrics
    assert (row.model, row.dataset, row.metric, row.score) == (str(outside), "tiny_qa", "-", None)
    [state] = run.statuses
    assert state.status == "failed" and (state.reason or "").startswith("outputs not under the run folder")
    assert len(predictions(work)) == 0
    assert not [p for p in opened if p.startswith(str(outside.parent))]
    assert "tiny_qa" not in (state.reason or "") or str(outside) not in (state.reason or "")


def test_a_symlink_out_of_the_run_is_refused(tmp_path: Path) -> None:
    work = case("nan-score", tmp_path)
    secret = tmp_path / "secret.json"
    secret.write_text('{"0": {"origin_prompt": "SECRET-CONTENT", "prediction": "x", "gold": "y"}}')
    target = next(work.glob("*/predictions/*/tiny_qa.json"))
    target.unlink()
    target.symlink_to(secret)
    rows = predictions(work)
    assert "SECRET-CONTENT" not in rows.prompt and rows.dataset.count("tiny_qa") == 0
    state = statuses(work)
    assert state[(MODEL, "tiny_qa")].status == "ok"  # its score came from its results file, which is inside


def test_compare_examples_shows_the_flips_of_is_correct_and_of_replicas(tmp_path: Path) -> None:
    store = open_store(f"chdb://{tmp_path / 'ch'}")
    try:
        store.migrate()
        store.store_run("he-a", "r0", parse_run(case("humaneval-is-correct", tmp_path)))
        store.store_run("he-b", "r0", parse_run(case("humaneval-is-correct", tmp_path, "run_b")))
        flips = {(f.example_index, f.direction) for f in store.flips("he-a", "he-b")}
        assert flips == {(0, "correct_to_wrong"), (4, "wrong_to_correct")}
        store.store_run("n-a", "r0", parse_run(case("n-replicas", tmp_path)))
        store.store_run("n-b", "r0", parse_run(case("n-replicas", tmp_path, "run_sampled")))
        assert store.count("predictions", "n-a", final=True) == 8  # replicas are not collapsed by the table's key
        replica_flips = {(f.example_index, f.replica, f.direction) for f in store.flips("n-a", "n-b")}
        assert replica_flips and all(r in (0, 1) for _, r, _ in replica_flips)
        store.store_run("nan", "r0", parse_run(case("nan-score", tmp_path)))
        reasons = {(r.dataset, r.metric): (r.score, r.status, r.reason) for r in store.results("nan")}
        score, status, reason = reasons[("tiny_mcq", "auc_score")]
        assert score is None and status == "failed" and "NaN" in (reason or "")
    finally:
        store.close()


# -- this repo's own cases (tests/fixtures/realworld/README.md: built with OpenCompass 0.5.4's own code) --------------
def test_an_abbr_with_spaces_brackets_and_a_comma_is_one_dataset(tmp_path: Path) -> None:
    work = case("abbr-comma-brackets", tmp_path)
    name = "tiny qa [v2], en"
    assert {(k[1], k[2]): m.score for k, m in scores(work).items()} == {(name, "accuracy"): 0.0}
    assert [(d, s.status) for (_, d), s in statuses(work).items()] == [(name, "ok")]
    assert predictions(work).dataset == [name] * 5


def test_the_cascade_final_verdict_wins_over_the_rule(tmp_path: Path) -> None:
    work = case("cascade-final-verdict", tmp_path)
    assert {(k[1], k[2]): m.score for k, m in scores(work).items()} == {("tiny_mcq", "accuracy"): 50.0}
    batch = predictions(work)
    assert batch.dataset == ["tiny_mcq"] * 4 and batch.correct == [True, False, False, True]


def test_a_reuse_with_a_narrower_config_keeps_the_earlier_dataset(tmp_path: Path) -> None:
    work = case("eval-reuse-narrower-config", tmp_path)
    run = parse_run(work)
    assert run.facts.config_file is not None and run.facts.config_file.endswith("configs/20261201_103000_42051.py")
    rows = {(k[1], k[2]): m.score for k, m in scores(work).items()}
    assert rows == {("tiny_qa", "accuracy"): 0.0, ("tiny_mcq", "accuracy"): 25.0}
    assert {s.status for s in run.statuses} == {"ok"}
    batch = predictions(work)
    assert batch.dataset.count("tiny_qa") == 5
    assert [c for d, c in zip(batch.dataset, batch.correct, strict=True) if d == "tiny_mcq"] == [
        False,
        False,
        False,
        True,
    ]


def test_an_llm_judge_run_keeps_all_metrics_and_its_replica_file_is_no_dataset(tmp_path: Path) -> None:
    work = case("llm-judge-replica-file", tmp_path)
    rows = {k[2]: m.score for k, m in scores(work).items() if k[1] == "tiny_qa"}
    assert rows == {
        "accuracy": 100.0,
        "accuracy_given_attempted": 100.0,
        "f1": 1.0,
        "attempted_ratio": 100.0,
        "correct_count": 5.0,
        "incorrect_count": 0.0,
        "not_attempted_count": 0.0,
    }
    assert {d for _, d in statuses(work)} == {"tiny_qa"}
    batch = predictions(work)
    assert batch.dataset == ["tiny_qa"] * 5 and batch.correct == [None] * 5
    assert not any("CORRECT" in p for p in batch.prediction)  # the model's answers, not the judge's


def test_a_crlf_subjective_table_and_its_judge(tmp_path: Path) -> None:
    work = case("mtbench-capability-crlf", tmp_path)
    rows = {k[2]: m for k, m in scores(work).items() if k[1] == "MTbench"}
    expected = {
        "total": 5.75,
        "writing": 6.0,
        "roleplay": 7.0,
        "reasoning": 5.0,
        "math": 1.0,
        "coding": 2.0,
        "extraction": 9.0,
        "stem": 8.0,
        "humanities": 8.0,
    }
    assert {k: m.score for k, m in rows.items()} == expected
    assert {m.judge for m in rows.values()} == {"gpt-4o-2024-08-06"} and {m.model for m in rows.values()} == {MODEL}
    assert not any("\r" in "".join(k) for k in scores(work))
    batch = predictions(work)
    assert batch.dataset == ["mtbench_single"] * 8 and batch.correct == [None] * 8


def test_multi_faceted_profiles_are_a_summary(tmp_path: Path) -> None:
    work = case("multi-faceted-profiles", tmp_path)
    rows = [(k[1], k[2], m.score) for k, m in scores(work).items()]
    assert sorted(rows) == [("tiny", "accuracy", 12.5), ("tiny_mcq", "accuracy", 25.0), ("tiny_qa", "accuracy", 0.0)]
    assert len(parse_run(work).metrics) == 3  # tiny_qa is in both profiles, stored once
    assert {s.status for s in statuses(work).values()} == {"ok"}
    assert len(predictions(work)) == 9


def test_replicas_known_only_from_the_config(tmp_path: Path) -> None:
    work = case("n-replicas-no-verdict", tmp_path)
    assert {(k[1], k[2]): m.score for k, m in scores(work).items()} == {("tiny_mcq", "accuracy"): 25.0}
    batch = predictions(work)
    assert batch.example_index == [0, 1, 2, 3] * 2 and batch.replica == [0] * 4 + [1] * 4
    assert batch.correct == [None] * 8


def test_nan_and_infinity_inside_a_results_file(tmp_path: Path) -> None:
    work = case("nan-inf-in-results", tmp_path)
    rows = scores(work)
    assert rows[(MODEL, "tiny_qa", "accuracy")].score == 0.0 and rows[(MODEL, "tiny_mcq", "accuracy")].score == 25.0
    nan, inf = rows[(MODEL, "tiny_mcq", "precision_A")], rows[(MODEL, "tiny_mcq", "not_A_per_A")]
    assert nan.score is None and "NaN" in (nan.reason or "")
    assert inf.score is None and "infinite" in (inf.reason or "")
    assert statuses(work)[(MODEL, "tiny_qa")].status == "ok"
    assert len(predictions(work)) == 9


def test_a_numeric_per_example_score_is_kept(tmp_path: Path) -> None:
    work = case("numeric-per-example-score", tmp_path)
    assert scores(work)[(MODEL, "tiny_needle", "score")].score == pytest.approx(60.81, abs=0.005)
    batch = predictions(work)
    assert batch.score == pytest.approx([100, 100, 1.4634146341463408, 100, 2.608695652173914])
    assert batch.correct == [None] * 5


def test_a_failed_shard_fails_the_dataset_with_the_shards_own_error(tmp_path: Path) -> None:
    work = case("sharded-failed-shard", tmp_path)
    state = statuses(work)
    assert list(state) == [(MODEL, "tiny_qa")] and state[(MODEL, "tiny_qa")].status == "failed"
    assert "RuntimeError: [enforce fail at alloc_cpu.cpp:117]" in (state[(MODEL, "tiny_qa")].reason or "")
    assert [(m.metric, m.score) for m in parse_run(work).metrics] == [("-", None)]
    batch = predictions(work)
    assert batch.dataset == ["tiny_qa"] * 3 and batch.example_index == [0, 1, 2]


def test_a_summary_per_judge(tmp_path: Path) -> None:
    work = case("subjective-by-judge", tmp_path)
    run = parse_run(work)
    rows = {(m.model, m.dataset, m.metric): (m.score, m.judge) for m in run.metrics}
    assert rows == {
        (MODEL, "alpaca_eval", k): (v, "judge-model")
        for k, v in {"helpful_base": 100.0, "koala": 100.0, "oasst": 0.0, "total": 50.0, "vicuna": 0.0}.items()
    }
    assert run.facts.models == [MODEL] and {s.status for s in run.statuses} == {"ok"}
    assert predictions(work).dataset == ["alpaca_eval"] * 4


def test_a_summarizer_abbr_column_is_the_model_itself(tmp_path: Path) -> None:
    work = case("summarizer-abbr-column", tmp_path)
    run = parse_run(work)
    assert run.facts.models == [MODEL]
    assert [(m.model, m.dataset, m.score) for m in run.metrics] == [(MODEL, "tiny_qa", 0.0)]
    assert predictions(work).model == [MODEL] * 5


def test_summary_groups_weighted_and_a_group_whose_subset_never_ran(tmp_path: Path) -> None:
    work = case("summary-groups-weighted", tmp_path)
    rows = {(k[1], k[2]): m.score for k, m in scores(work).items()}
    assert rows == {
        ("tiny_weighted", "accuracy"): 18.75,
        ("tiny_std", "accuracy"): 12.5,
        ("tiny_sum", "accuracy"): 25.0,
        ("tiny_with_gsm8k", "-"): None,
        ("tiny_mcq", "accuracy"): 25.0,
        ("tiny_qa", "accuracy"): 0.0,
    }
    state = statuses(work)
    assert state[(MODEL, "tiny_with_gsm8k")].status in ("failed", "missing")
    assert all(s.status == "ok" for (_, d), s in state.items() if d != "tiny_with_gsm8k")
    batch = predictions(work)
    assert len(batch) == 9 and not {"tiny_weighted", "tiny_with_gsm8k", "gsm8k"} & set(batch.dataset)


def test_a_model_abbr_with_a_slash_is_told_from_a_dataset_abbr_with_one(tmp_path: Path) -> None:
    """``abbr='org/model'`` nests the model's folders; the summary's column names the model."""
    work = tmp_path / "work"
    shutil.copytree(CASES / "dataset-abbr-slash" / "run", work)
    folder = next(work.glob("2*"))
    for kind in ("results", "predictions", "logs/infer", "logs/eval"):
        (folder / kind / "org").mkdir(parents=True)
        (folder / kind / MODEL).rename(folder / kind / "org" / MODEL)
    summary = next(folder.glob("summary/*.csv"))
    summary.write_text(summary.read_text().replace(MODEL, f"org/{MODEL}"))
    summary.write_bytes(b"\xef\xbb\xbf" + summary.read_bytes())  # and a byte-order mark before the header
    run = parse_run(work)
    assert run.facts.models == [f"org/{MODEL}"]
    assert {(s.model, s.dataset): s.status for s in run.statuses} == {
        (f"org/{MODEL}", "cibench_generation/pandas"): "ok",
        (f"org/{MODEL}", "cibench_generation"): "ok",
    }
    assert predictions(work).dataset == ["cibench_generation/pandas"] * 5


def test_g_pass_on_real_sampled_replicas(tmp_path: Path) -> None:
    work = case("gpass-sampled-replicas", tmp_path)
    rows = {k[2]: m.score for k, m in scores(work).items() if k[1] == "tiny_mcq"}
    assert len(rows) == 13 and rows["accuracy (2 runs average)"] == 12.5
    for prefix in ("", "tiny/"):
        assert [rows[f"{prefix}G-Pass@2_{t}"] for t in ("0.0", "0.25", "0.5", "0.75", "1.0")] == [25.0] * 3 + [0.0] * 2
        assert rows[f"{prefix}mG-Pass@2"] == 0.0
    batch = predictions(work)
    assert batch.replica == [0] * 4 + [1] * 4 and batch.example_index == [0, 1, 2, 3] * 2
    assert batch.correct == [False] * 4 + [True, False, False, False]  # only replica 1 of example 0 is right


def test_a_model_whose_results_folder_is_missing(tmp_path: Path) -> None:
    work = case("second-model-results-missing", tmp_path)
    state = statuses(work)
    assert state[(MODEL, "tiny_qa")].status == "ok"
    ft = state[(f"{MODEL}-ft", "tiny_qa")]
    assert ft.status == "failed" and "TypeError: 'NoneType' object is not callable" in (ft.reason or "")
    assert [m.score for m in parse_run(work).metrics if m.model == f"{MODEL}-ft"] == [None]
    batch = predictions(work)
    assert batch.model.count(MODEL) == 5 and batch.model.count(f"{MODEL}-ft") == 5


def test_ppl_details_with_a_scalar_correct(tmp_path: Path) -> None:
    work = case("ppl-scalar-correct", tmp_path)
    [row] = parse_run(work).metrics
    assert (row.model, row.dataset, row.metric, row.score, row.mode) == (
        "smollm2-135m-base",
        "tiny_mcq_ppl",
        "accuracy",
        25.0,
        "ppl",
    )
    batch = predictions(work)
    assert batch.correct == [False, False, True, False] and batch.prediction == ["A"] * 4
    assert batch.gold == ["B", "C", "A", "D"] and all(p and "label: " not in p for p in batch.prompt)


def test_a_crashed_summarizer_leaves_the_results_files_to_score(tmp_path: Path) -> None:
    work = case("summarizer-crashed-no-summary", tmp_path)
    run = parse_run(work)
    assert run.facts.summary_file is None
    assert {(m.dataset, m.metric): m.score for m in run.metrics} == {
        ("tiny_qa", "accuracy"): 0.0,
        ("tiny_mcq", "accuracy"): 25.0,
    }
    assert {s.status for s in run.statuses} == {"ok"}
    batch = predictions(work)
    assert batch.dataset.count("tiny_qa") == 5
    assert [c for d, c in zip(batch.dataset, batch.correct, strict=True) if d == "tiny_mcq"] == [
        False,
        False,
        False,
        True,
    ]


def test_a_broken_predictions_file_costs_only_its_dataset_in_the_store(tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(CASES.parent / "opencompass" / "two_datasets_one_fails", work)
    broken = next(work.glob("2*/predictions/*/tiny_qa.json"))
    broken.write_bytes(broken.read_bytes()[:200])  # a dump cut short
    store = open_store(f"chdb://{tmp_path / 'ch'}")
    try:
        store.migrate()
        report = store.store_run("cut", "r0", parse_run(work))
        assert report.predictions > 0  # the other dataset's predictions are stored
        state = {s.dataset: s for s in store.statuses("cut")}
        assert state["tiny_qa"].status == "partial" and "predictions unreadable" in (state["tiny_qa"].reason or "")
        assert "tiny_qa.json" in (state["tiny_qa"].reason or "")
        assert {r.dataset for r in store.results("cut") if r.score is not None} >= {"tiny_qa"}
    finally:
        store.close()
