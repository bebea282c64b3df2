"""Breaker tests for the OpenCompass result reader (issue 11): inputs OpenCompass 0.5.4 can really write (or a
user's partially copied run folder can hold) on which the reader stores wrong data, crashes or reads outside the run.
Each test fails on the code it was written against; its docstring says what the right behaviour is and why."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from budeval.engine.results import parse_run
from budeval.schemas.results import PredictionBatch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODEL = "smollm2-135m-instruct"


def copy(rel: str, tmp_path: Path) -> Path:
    dest = tmp_path / "work"
    shutil.copytree(FIXTURES / rel, dest, symlinks=True)
    return dest


def run_folder(work: Path) -> Path:
    return next(p for p in sorted(work.iterdir()) if re.match(r"^\d{8}_\d{6}$", p.name))


def rows(work: Path) -> PredictionBatch:
    out = PredictionBatch()
    for batch in parse_run(work, workers=0).prediction_batches(batch_size=1000):
        for name in PredictionBatch.__slots__:
            getattr(out, name).extend(getattr(batch, name))
    return out


def _renumber_mcq(work: Path, indices: list[int]) -> list[bool]:
    """Rewrite the mcq fixture's details as OpenCompass writes them for a ``test_range`` subset: ``example_abbr`` is
    ``{subdivision}_{idx}`` with ``idx`` the example's index in the FULL split (``datasets/base.py:24-27`` maps idx
    before ``icl_dataset_reader.py:94-98`` slices/samples the test split; ``icl_base_evaluator.py:64`` builds the abbr),
    while the details stay in test-set order = prediction key order. Returns the verdict of each prediction key."""
    results = next(run_folder(work).glob("results/*/tiny_mcq.json"))
    data = json.loads(results.read_text())
    for item, idx in zip(data["details"], indices, strict=True):
        item["example_abbr"] = f"tiny_mcq_{idx}"
    results.write_text(json.dumps(data, indent=4))
    return [item["correct"][0] for item in data["details"]]


def test_test_range_random_subset_verdicts_follow_prediction_order(tmp_path: Path) -> None:
    """reader_cfg ``test_range=4`` on a 10-example split samples indices ``[8, 2, 0, 7]``
    (``icl_dataset_reader.py:234-241``, ``random.Random(x=size).shuffle``), so ``example_abbr`` ends in 8, 2, 0, 7 but
    details[i] is prediction key i (the evaluator scores the test set in order). Right: row i gets details[i]'s
    verdict. Placing verdicts by the abbr's number gives them to the wrong predictions (or to none)."""
    work = copy("opencompass/mcq", tmp_path)
    expected = _renumber_mcq(work, [8, 2, 0, 7])
    got = rows(work)
    assert got.correct == expected


def test_test_range_slice_verdicts_not_lost(tmp_path: Path) -> None:
    """reader_cfg ``test_range='[5:9]'`` (``icl_dataset_reader.py:242-243``) keeps idx 5..8 in ``example_abbr`` while
    the predictions are keyed 0..3. Right: the 4 rows carry the 4 verdicts; actual: all NULL (verdicts placed at keys
    5..8, which no prediction has), so ``compare --examples`` shows no flips."""
    work = copy("opencompass/mcq", tmp_path)
    expected = _renumber_mcq(work, [5, 6, 7, 8])
    got = rows(work)
    assert got.correct == expected


def test_failed_first_shard_does_not_invent_a_dataset(tmp_path: Path) -> None:
    """SizePartitioner splits tiny_qa into ``tiny_qa_0``/``tiny_qa_1`` (``partitioners/size.py:152-160``); when shard
    0's inference dies and shard 1 succeeds, only ``predictions/{m}/tiny_qa_1.json`` exists. Right: one dataset
    ``tiny_qa`` (failed, the eval stops at the first gap: ``tasks/openicl_eval.py:172-186``), no dataset
    ``tiny_qa_1``; actual: an invented dataset ``tiny_qa_1`` with 3 predictions and status failed."""
    work = copy("realworld/sharded-failed-shard/run", tmp_path)
    folder = run_folder(work)
    pred = folder / "predictions" / MODEL
    (pred / "tiny_qa_0.json").rename(pred / "tiny_qa_1.json")
    logs = folder / "logs" / "infer" / MODEL
    (logs / "tiny_qa_1.out").rename(logs / "swap")
    (logs / "tiny_qa_0.out").rename(logs / "tiny_qa_1.out")
    (logs / "swap").rename(logs / "tiny_qa_0.out")
    run = parse_run(work, workers=0)
    assert run.facts.datasets == ["tiny_qa"]
    assert {s.dataset for s in run.statuses} == {"tiny_qa"}


def test_bradley_terry_summary_does_not_invent_models(tmp_path: Path) -> None:
    """CompassArenaBradleyTerrySummarizer writes ``summary/summary_{ts}_by_{judge}.csv`` with pandas
    (``summarizers/subjective/compass_arena_bradley_terry.py:895-928``): header ``dataset,version,base_model,metric,
    mode,ranking,ranking_ub,model_name,predicted_win_rate,rating,...``, one row per model (``model_name`` column).
    Right: the models are the ``model_name`` values (or the table is noted as unknown and skipped); actual: it is
    read as a NeedleBench table and every column after ``dataset`` becomes a model (``ranking``, ``rating``, ...)
    with a score."""
    work = copy("opencompass/mcq", tmp_path)
    summary = run_folder(work) / "summary"
    stamp = run_folder(work).name
    for old in summary.iterdir():
        old.unlink()
    (summary / f"summary_{stamp}_by_gpt-4o.csv").write_text(
        "dataset,version,base_model,metric,mode,ranking,ranking_ub,model_name,predicted_win_rate,rating,"
        "rating_q975,rating_q025,std_dev,num_battles\n"
        f"tiny_mcq,d890be,gpt-4o,bt_rating,gen,1,1,{MODEL},0.5,1000.0,1010.0,990.0,5.0,4\n"
    )
    run = parse_run(work, workers=0)
    assert run.facts.models == [MODEL]
    assert {m.model for m in run.metrics} == {MODEL}


def test_non_utf8_file_name_does_not_cost_the_store(tmp_path: Path) -> None:
    """A dataset abbr written on a non-UTF-8 host (or a folder copied from an archive in latin-1) gives a file name
    with an invalid byte; Python lists it with a surrogate escape (``tiny_mcq\\udce9``). Right: names are made
    storable (U+FFFD, as for file contents, or a typed ResultParseError naming the file); actual: the reader hands
    out the surrogate, and ``budeval extract`` then fails in the ClickHouse insert (clickhouse_connect traceback on
    stderr, nothing stored, not even the good datasets)."""
    work = copy("opencompass/mcq", tmp_path)
    folder = run_folder(work) / "results" / MODEL
    src = bytes(folder / "tiny_mcq.json")
    (folder / "tiny_mcq.json").rename(
        src.replace(b"tiny_mcq.json", b"tiny_mcq\xe9.json").decode(errors="surrogateescape")
    )
    run = parse_run(work, workers=0)
    for name in [*run.facts.datasets, *(s.dataset for s in run.statuses), *(m.dataset for m in run.metrics)]:
        name.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate


def test_newest_run_folder_as_symlink_is_not_replaced_by_an_older_run(tmp_path: Path) -> None:
    """``newest_run_folder`` skips a timestamp entry that is a symlink, so a work dir whose newest run is linked in
    (``ln -s /data/runs/20261124_000000 work/``, a partial copy with ``cp -s``) silently reports the OLDER run as the
    result. Right (docs/parser.md "Which run": an older folder is never read in its place): the newest entry is the
    run; if it may not be followed, a typed error (OutsideRunError/NoSummaryError) naming it; actual: the older run's
    scores, no note."""
    work = copy("opencompass/mcq", tmp_path)
    elsewhere = tmp_path / "elsewhere" / "20991231_235959"
    shutil.copytree(run_folder(work), elsewhere)
    (work / elsewhere.name).symlink_to(elsewhere, target_is_directory=True)
    try:
        run = parse_run(work, workers=0)
    except Exception as exc:  # a typed budeval error is fine
        assert type(exc).__module__ == "budeval.errors", exc
        return
    assert run.facts.timestamp == elsewhere.name


def test_results_file_cut_after_an_item_is_not_a_complete_result(tmp_path: Path) -> None:
    """``mmengine.dump`` (``tasks/openicl_eval.py:427-435``) writes in place, so a run still being written (or a copy
    cut short) holds a results file ending after one details item, ``        }``. Right (docs/parser.md "Bad input":
    a truncated results file is unreadable -> the dataset failed with that reason, or partial); actual: the indent=4
    fast path sees a final ``}`` and takes it as complete: status ok, and the remaining examples silently lose
    their verdicts."""
    work = copy("opencompass/mcq", tmp_path)
    results = next(run_folder(work).glob("results/*/tiny_mcq.json"))
    text = results.read_text()
    cut = text.index("        },\n") + len("        }")  # end of the first details item
    results.write_text(text[:cut] + "\n")
    run = parse_run(work, workers=0)
    (status,) = run.statuses
    assert status.status != "ok", status


def test_error_excerpt_does_not_read_a_log_linked_outside(tmp_path: Path) -> None:
    """``layout.error_excerpt`` (local backend failure excerpts) globs ``logs/*/*/*.out`` and reads each without the
    confinement every other path gets, so a task log that is a symlink to a file outside the run folder has its
    error lines echoed into the evaluation's status. Right: links leaving the run folder are not opened (as in
    ``RunLayout.inside``); actual: the outside file's line is in the excerpt."""
    from budeval.engine.results.layout import error_excerpt

    work = copy("opencompass/mcq", tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("KeyError: outside-the-run-42\n")
    log = next(run_folder(work).glob("logs/infer/*/tiny_mcq.out"))
    log.unlink()
    log.symlink_to(secret)
    console = work / ".budeval" / "output.log"
    assert "outside-the-run-42" not in error_excerpt(work, console)


def test_one_summary_linked_outside_does_not_drop_the_others(tmp_path: Path) -> None:
    """``read_summaries`` catches OutsideRunError around the whole listing, so one summary CSV that is a symlink out
    of the run (hand-assembled folder) silently drops every summary, including the real default one and its group
    rows. Right: that one file is noted and skipped, the other summaries are read; actual: ``summary_files`` is
    empty and the group row of the real summary is gone."""
    work = copy("opencompass/mcq", tmp_path)
    folder = run_folder(work)
    csv = next(folder.glob("summary/summary_*.csv"))
    csv.write_text(csv.read_text() + "tiny_avg,-,naive_average,gen,25.00\n")
    outside = tmp_path / "other.csv"
    outside.write_text(csv.read_text())
    (folder / "summary" / f"{csv.stem}_by_gpt-4o.csv").symlink_to(outside)
    run = parse_run(work, workers=0)
    assert run.facts.summary_file is not None
    assert "tiny_avg" in run.facts.datasets


def test_pretrain_summary_pseudo_rows_are_not_datasets(tmp_path: Path) -> None:
    """PretrainSummarizer (``summarizers/summarizer_pretrain.py:162-172``) writes the default header and then
    pseudo-rows ``time,version,metric,mode,<MM/DD HH:MM>``, ``checkpoint,...`` and ``max_seq_len,version,metric,
    mode,2048`` before the datasets, and ``---section`` rows carrying the section average (``:188-201``). Right: none
    of these is a dataset (docs/summarizers.md row 20); actual: datasets ``time``, ``checkpoint``, ``max_seq_len``
    and ``---exam`` are invented, ``max_seq_len`` with a "score" of 2048.0 and metric ``metric``."""
    work = copy("opencompass/mcq", tmp_path)
    csv = next(run_folder(work).glob("summary/summary_*.csv"))
    csv.write_text(
        f"dataset,version,metric,mode,{MODEL}\n"
        "time,version,metric,mode,12/01 10:30\n"
        "checkpoint,version,metric,mode,instruct\n"
        "max_seq_len,version,metric,mode,2048\n"
        "tiny_mcq,d890be,accuracy,gen,25.00\n"
        "---exam,-,-,-,25.00\n"
    )
    run = parse_run(work, workers=0)
    assert run.facts.datasets == ["tiny_mcq"]
    assert all(m.score != 2048.0 for m in run.metrics)


def test_compass_arena_report_is_not_read_transposed(tmp_path: Path) -> None:
    """CompassArenaSummarizer (``summarizers/subjective/compass_arena.py:186-211``, used as the top-level summarizer in
    its own configs' style) writes ``summary/{ts}/{d}-judged-by--{j}-report.csv`` with header ``,<models>`` and one
    row per metric (``{d}``, ``position_bias``, capabilities): models are COLUMNS. Right: (model = column, dataset
    ``{d}``, metric = row label), or the table noted as unknown; actual: it is read as a per-model table, so the
    row labels ``compassarena_language``/``position_bias`` become models and the real model becomes a metric."""
    work = copy("opencompass/mcq", tmp_path)
    folder = run_folder(work)
    for old in (folder / "summary").iterdir():
        old.unlink()
    table = folder / "summary" / folder.name
    table.mkdir()
    (table / "compassarena_language-judged-by--gpt-4o-report.csv").write_text(
        f",{MODEL}\ncompassarena_language,45.00\nposition_bias,3.00\nreasoning,40.00\n"
    )
    run = parse_run(work, workers=0)
    assert run.facts.models == [MODEL]
    assert "position_bias" not in {m.model for m in run.metrics}


def test_integer_verdicts_count_as_verdicts(tmp_path: Path) -> None:
    """Some evaluators give the per-example verdict as 0/1: ``ARCPrizeEvaluator`` (``datasets/
    arc_prize_public_evaluation.py:187-190``, ``'correct': 1 if is_correct else 0``), MolecularIQ
    (``datasets/moleculariq/moleculariq.py:128,175,227``, ``int(reward == 1.0)``); OpenCompass itself counts them
    with ``int(detail['correct'])`` (``icl_base_evaluator.py:182-185``). Right: 1 -> correct, 0 -> wrong; actual:
    every such verdict is NULL, so these datasets never show flips."""
    work = copy("opencompass/mcq", tmp_path)
    results = next(run_folder(work).glob("results/*/tiny_mcq.json"))
    data = json.loads(results.read_text())
    expected = []
    for item in data["details"]:
        item["correct"] = [int(v) for v in item["correct"]]
        expected.append(bool(item["correct"][0]))
    results.write_text(json.dumps(data, indent=4))
    assert rows(work).correct == expected


def test_scores_of_a_large_results_file_read_in_bounded_memory(tmp_path: Path) -> None:
    """``results/{m}/{d}.json`` repeats every prediction in ``details`` (``icl_base_evaluator.py:210-230``), so with
    long outputs and ``n`` replicas it reaches hundreds of MB. docs/parser.md promises memory bounded by a window,
    not the file; but ``read_result_scores`` takes the indent=4 fast path for every OpenCompass-written file and
    ``read_bytes()`` the whole file just to find its few top-level numbers. Right: peak well under the file size
    (the metrics sit before ``details``); actual: peak >= the file size (here 48 MB for a 48 MB file)."""
    import tracemalloc

    from budeval.engine.results.scores import read_result_scores

    path = tmp_path / "big.json"
    item = {"example_abbr": "d_0", "pred": ["x" * 4000], "correct": [True]}
    with path.open("w") as f:
        f.write('{\n    "accuracy": 50.0,\n    "details": [\n')
        chunk = json.dumps(item, indent=4).replace("\n", "\n        ")
        count = 12_000
        for i in range(count):
            f.write("        " + chunk + (",\n" if i < count - 1 else "\n"))
        f.write("    ]\n}\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        scores = read_result_scores(path, "big.json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scores.metrics == [("accuracy", 50.0, None)]
    assert peak < size / 4, (peak, size)


def test_summary_rows_of_datasets_the_run_never_had_are_not_failed_datasets(tmp_path: Path) -> None:
    """A summarizer with ``dataset_abbrs`` (every shipped one: ``configs/summarizers/example.py``, ``leaderboard.py``,
    ...) lists rows in that order whether or not the run configured them; a dataset no model has gets the row
    ``name,-,-,-,-`` (``summarizers/default.py:277-291``). Right: a name that is not in the run's config, has no file
    and no score is not one of the run's datasets (at most a note); actual: each becomes a (model, dataset) with
    status ``failed`` "no results file", so a fully successful gsm8k run reports dozens of failed datasets."""
    work = copy("opencompass/mcq", tmp_path)
    csv = next(run_folder(work).glob("summary/summary_*.csv"))
    csv.write_text(
        f"dataset,version,metric,mode,{MODEL}\n"
        "--------- 考试 Exam ---------,-,-,-,-\n"
        "ceval,-,-,-,-\n"
        "mmlu,-,-,-,-\n"
        "tiny_mcq,d890be,accuracy,gen,25.00\n"
    )
    run = parse_run(work, workers=0)
    assert [s.status for s in run.statuses] == ["ok"], run.statuses


def test_model_abbr_with_a_comma_is_one_model(tmp_path: Path) -> None:
    """The default summarizer replaces ``,`` by a space in every CSV cell, the header included
    (``summarizers/default.py:378``), so model ``smol,v2`` is the column ``smol v2`` while its files are under
    ``results/smol,v2/``. The reader maps that for dataset names only. Right: one model ``smol,v2``; actual: an
    extra model ``smol v2`` (the summary's copy of the same scores) is invented."""
    work = copy("opencompass/mcq", tmp_path)
    folder = run_folder(work)
    for kind in ("results", "predictions", "logs/infer", "logs/eval"):
        (folder / kind / MODEL).rename(folder / kind / "smol,v2")
    config = next(folder.glob("configs/*.py"))
    config.write_text(config.read_text().replace(MODEL, "smol,v2"))
    csv = next(folder.glob("summary/summary_*.csv"))
    csv.write_text("dataset,version,metric,mode,smol v2\ntiny_mcq,d890be,accuracy,gen,25.00\n")
    run = parse_run(work, workers=0)
    assert run.facts.models == ["smol,v2"]


def test_judge_output_of_a_failed_eval_is_not_a_dataset(tmp_path: Path) -> None:
    """GenericLLMEvaluator writes the judge's own output ``results/{m}/{d}_replica{r}.json`` during the eval task
    (``evaluator/generic_llm_evaluator.py:64``), before ``results/{m}/{d}.json`` is dumped at the task's end
    (``tasks/openicl_eval.py:427-435``). When the eval dies in between (judge post-processing error, OOM, a run
    still being written), only the judge file exists. Right: dataset ``tiny_qa`` failed, no dataset
    ``tiny_qa_replica0`` (the reader only recognises judge files beside an existing ``{d}.json``); actual: an
    invented dataset ``tiny_qa_replica0``."""
    work = copy("realworld/llm-judge-replica-file/run", tmp_path)
    folder = run_folder(work)
    (folder / "results" / MODEL / "tiny_qa.json").unlink()
    csv = next(folder.glob("summary/summary_*.csv"))
    csv.unlink()
    run = parse_run(work, workers=0)
    assert run.facts.datasets == ["tiny_qa"]


def test_judged_results_score_when_the_subjective_summary_is_missing(tmp_path: Path) -> None:
    """With a ``dict_postprocessor`` (e.g. ``alpacaeval_postprocess``, ``datasets/subjective/alpacaeval.py:70-132``,
    applied in ``openicl/icl_evaluator/lm_evaluator.py:359-367``) the judged results file
    ``results/{base}_{m}_judged-by--{j}/{d}.json`` holds the scores (``total``, per capability) plus ``details``.
    When the subjective summarizer then crashes (no ``summary/``), the issue asks that scores come from the results
    files. Right: rows (model, alpaca_eval, total=33.33, judge ``judge-model``); actual: NoSummaryError "has no
    usable summary and no results files" -- nothing stored although the results are there."""
    work = copy("realworld/subjective-all-results/run", tmp_path)
    folder = run_folder(work)
    shutil.rmtree(folder / "summary")
    judged = next(folder.glob("results/*_judged-by--*/alpaca_eval.json"))
    raw = json.loads(judged.read_text())
    judged.write_text(
        json.dumps({"total": 33.33, "helpful_base": 100.0, "koala": 0.0, "vicuna": 0.0, "details": raw}, indent=4)
    )
    run = parse_run(work, workers=0)
    scores = {(m.model, m.dataset, m.metric): m.score for m in run.metrics}
    assert scores.get((MODEL, "alpaca_eval", "total")) == 33.33


def test_reuse_pass_summary_wins_over_an_older_pass_of_another_summarizer(tmp_path: Path) -> None:
    """``-r`` reuses the folder and every pass writes its summary with its own ``{ts}`` (``cli/main.py:297-316,
    474-506``). Pass 1 (default summarizer) wrote ``summary_{T1}.csv`` with a group still ``-``; pass 2 (newer,
    MultiFacetedSummarizer, ``summarizers/multi_faceted.py:84-110``) wrote ``summary/summary_{T2}/{profile}.csv``
    with the group scored. Right: the newest pass's table is the one of record (docs/parser.md: "the newest {ts}
    only"); actual: the default CSV is read first whatever its ``{ts}``, so the stale ``-`` of T1 wins and the
    group's score is NULL."""
    work = copy("opencompass/mcq", tmp_path)
    folder = run_folder(work)
    old = next(folder.glob("summary/summary_*.csv"))
    old.write_text(
        f"dataset,version,metric,mode,{MODEL}\ntiny_mcq,d890be,accuracy,gen,25.00\ntiny_avg,-,naive_average,gen,-\n"
    )
    profile = folder / "summary" / "summary_20991231_000000"
    profile.mkdir()
    (profile / "overall.csv").write_text(
        f"dataset,version,metric,mode,{MODEL}\ntiny_mcq,d890be,accuracy,gen,25.00\ntiny_avg,-,naive_average,gen,25.00\n"
    )
    run = parse_run(work, workers=0)
    scores = {(m.dataset, m.metric): m.score for m in run.metrics}
    assert scores[("tiny_avg", "naive_average")] == 25.0


_AS_USER = """
import sys
from budeval.engine.results import parse_run
from budeval.errors import BudevalError
try:
    run = parse_run(sys.argv[1], workers=0)
    run.statuses
    for _ in run.prediction_batches():
        pass
except BudevalError as exc:
    print("typed", type(exc).__name__)
except Exception as exc:
    print("UNTYPED", type(exc).__name__, exc)
    sys.exit(3)
"""


def _parse_unprivileged(work: Path) -> subprocess.CompletedProcess[str]:
    """parse_run in a process that file permissions apply to (root ignores them: run as nobody via setpriv)."""
    cmd = [sys.executable, "-c", _AS_USER, str(work)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions cannot be tested")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")


@pytest.mark.parametrize("victim", ["logs/infer/*/tiny_qa_1.out", "predictions/*/tiny_qa_0.json"])
def test_unreadable_file_is_a_typed_error_or_a_reason(victim: str) -> None:
    """A run folder copied with ``rsync``/``kubectl cp`` from a pod running as another uid can hold files the reader
    may not open. Right: a typed budeval error (or the dataset failed with a reason) and no host path in a
    traceback; actual: ``PermissionError`` escapes ``parse_run`` (``layout.tail`` only catches FileNotFoundError and
    IsADirectoryError) and ``budeval extract`` dies with a raw traceback naming the absolute path."""
    base = Path(tempfile.mkdtemp(prefix="breaker-perm-", dir="/tmp"))
    try:
        base.chmod(0o755)
        work = base / "work"
        shutil.copytree(FIXTURES / "realworld/sharded-failed-shard/run", work)
        for path in [work, *work.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        target = next(run_folder(work).glob(victim))
        target.chmod(0)
        done = _parse_unprivileged(work)
        assert "UNTYPED" not in done.stdout and done.returncode == 0, done.stdout + done.stderr[-2000:]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_judge_name_of_fofo_report(tmp_path: Path) -> None:
    """FofoSummarizer names its table ``{d}-judged-by--{j}-`` + ``-report.csv`` (``summarizers/subjective/fofo.py:
    150-152``: a double dash). Right: judge ``gpt-4o``; actual: ``gpt-4o-`` (a judge that does not exist is
    recorded in ``facts.judges`` and on every row)."""
    from budeval.engine.results.layout import judge_of

    assert judge_of("fofo_test_prompts-judged-by--gpt-4o--report.csv") == "gpt-4o"


def test_replica_count_does_not_read_a_whole_predictions_file(tmp_path: Path) -> None:
    """With ``n > 1`` and an evaluator without list-shaped details (HF metrics: ``icl_base_evaluator.py:234``), the
    replica split comes from counting prediction entries; ``verdicts._count_entries`` does it with ``f.read()`` of
    the whole file, so a 40 MB predictions file costs 40 MB at once (docs/parser.md: memory bounded by the window,
    not the file). Right: a streamed count; actual: peak >= the file size."""
    import tracemalloc

    from budeval.engine.results.verdicts import dataset_verdicts

    pred = tmp_path / "d.json"
    with pred.open("w") as f:
        f.write("{\n")
        count = 10_000
        for i in range(count):
            entry = json.dumps({"origin_prompt": "p" * 4000, "prediction": "x", "gold": "A"}, indent=4)
            f.write(f'    "{i}": ' + entry.replace("\n", "\n    ") + (",\n" if i < count - 1 else "\n"))
        f.write("}\n")
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"accuracy": 50.0}, indent=4))
    size = pred.stat().st_size
    tracemalloc.start()
    try:
        verdicts = dataset_verdicts(results, "r.json", [pred], n=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert verdicts.examples == count // 2
    assert peak < size / 4, (peak, size)


def test_alpacaeval_table_second_model_block_keeps_its_scores(tmp_path: Path) -> None:
    """AlpacaSummarizer appends one block per compared model to ``AlpacaEval2-judged-by--{j}.csv``: a header row
    ``{base}_vs_{m},total,<capabilities>`` then ``win_{m},<values>`` (``summarizers/subjective/alpacaeval.py:
    177-185``, file opened ``a+``). Right: the second model's row gives its scores (total 66.67); actual: the
    second block's header line is read as a data row of that model (``..._vs_qwen`` ends with ``_qwen``), its text
    cells become NULL scores that win the de-duplication, so the real values are lost."""
    work = copy("realworld/subjective-all-results/run", tmp_path)
    folder = run_folder(work)
    other = "qwen2-0.5b"
    shutil.copytree(folder / "predictions" / MODEL, folder / "predictions" / other)
    tables = next((folder / "summary").glob("2*"))
    (tables / "Subjective_all_results-judged-by--judge-model.csv").unlink()
    (tables / "AlpacaEval2-judged-by--judge-model.csv").write_text(
        f"gpt4-turbo_vs_{MODEL},total,helpful_base,koala,vicuna\r\n"
        f"win_{MODEL},33.33,100.0,0.0,0.0\r\n"
        f"gpt4-turbo_vs_{other},total,helpful_base,koala,vicuna\r\n"
        f"win_{other},66.67,100.0,50.0,0.0\r\n"
    )
    run = parse_run(work, workers=0)
    scores = {(m.model, m.dataset, m.metric): m.score for m in run.metrics}
    assert scores[(MODEL, "AlpacaEval2", "total")] == 33.33
    assert scores[(other, "AlpacaEval2", "total")] == 66.67


def test_meta_review_folder_is_not_a_model(tmp_path: Path) -> None:
    """With ``meta_judge_model`` the subjective eval writes ``results/{models}_summarized-by--{j}/{d}.json``
    (``utils/abbr.py:51-62``, ``tasks/subjective_eval.py:41-52``), the meta reviewer's counterpart of
    ``_judged-by--``. Right: it belongs to the evaluated model (judge ``{j}``), like a judged folder; actual: the
    folder name becomes an invented model ``gpt4-turbo_..._summarized-by--judge-model`` with status ``missing``."""
    work = copy("realworld/subjective-all-results/run", tmp_path)
    judged = next(run_folder(work).glob("results/*_judged-by--*"))
    shutil.copytree(judged, judged.with_name(judged.name.replace("_judged-by--", "_summarized-by--")))
    run = parse_run(work, workers=0)
    assert run.facts.models == [MODEL]


def test_reuse_with_a_changed_n_does_not_split_single_replica_output(tmp_path: Path) -> None:
    """Pass 1 ran ``tiny_mcq`` with n=1; the user sets ``n=2`` and re-runs with ``-r``: OpenCompass skips the
    dataset because its predictions and results exist (``tasks/openicl_infer.py:98-101``,
    ``tasks/openicl_eval.py:91-97``) and pass 2 only writes ``configs/{T2}_{pid}.py`` and ``summary_{T2}.csv``. The
    details still show ONE verdict per example (lists of length 1). Right: 4 examples, replica 0 (the details are
    the evidence); actual: the reader trusts the newest config's n=2 and relabels the 4 rows as 2 examples x 2
    replicas (example_index 0,1,0,1; replica 0,0,1,1), which then pairs the wrong rows in ``compare --examples``."""
    work = copy("opencompass/mcq", tmp_path)
    folder = run_folder(work)
    config = next(folder.glob("configs/*.py"))
    (folder / "configs" / "20991231_000000_777.py").write_text(
        config.read_text().replace("dict(abbr='tiny_mcq',", "dict(abbr='tiny_mcq',\n        n=2,", 1)
    )
    summary = next(folder.glob("summary/summary_*.csv"))
    shutil.copy(summary, summary.with_name("summary_20991231_000000.csv"))
    got = rows(work)
    assert got.example_index == [0, 1, 2, 3]
    assert got.replica == [0, 0, 0, 0]


def test_hidden_folders_in_a_model_folder_are_not_datasets(tmp_path: Path) -> None:
    """Opening a results file in Jupyter leaves ``results/{m}/.ipynb_checkpoints/{d}-checkpoint.json`` (a copy).
    ``RunLayout.files_of`` skips hidden files but walks hidden folders. Right: no dataset from a hidden folder
    (OpenCompass never writes one: abbrs come from the config); actual: an invented dataset
    ``.ipynb_checkpoints/tiny_mcq-checkpoint`` carrying a copy of tiny_mcq's score."""
    work = copy("opencompass/mcq", tmp_path)
    results = run_folder(work) / "results" / MODEL
    (results / ".ipynb_checkpoints").mkdir()
    shutil.copy(results / "tiny_mcq.json", results / ".ipynb_checkpoints" / "tiny_mcq-checkpoint.json")
    run = parse_run(work, workers=0)
    assert run.facts.datasets == ["tiny_mcq"]


def test_implausible_example_index_is_not_a_memory_bomb(tmp_path: Path) -> None:
    """``Verdicts.place`` grows a bytearray up to the largest example index named in ``details`` (the number at the
    end of ``example_abbr``, or a dict-details key), so one damaged or hand-edited results file naming example
    ``tiny_mcq_4000000000000`` makes the reader allocate terabytes: MemoryError (an untyped crash), and an index of a
    few billion gets the pod OOM-killed instead. Right: an index beyond the predictions' entries is ignored (or a
    ResultParseError naming the file); actual: MemoryError out of ``prediction_batches``."""
    work = copy("opencompass/mcq", tmp_path)
    results = next(run_folder(work).glob("results/*/tiny_mcq.json"))
    data = json.loads(results.read_text())
    data["details"][1]["example_abbr"] = "tiny_mcq_4000000000000"
    results.write_text(json.dumps(data, indent=4))
    try:
        got = rows(work)
    except MemoryError:
        pytest.fail("MemoryError from an example index in a results file")
    assert len(got) == 4


def test_one_truncated_predictions_file_does_not_cost_the_other_datasets(tmp_path: Path) -> None:
    """Inference dumps ``predictions/{m}/{d}.json`` in place (``icl_base_inferencer.py:102-104``); a run killed or
    out of disk mid-dump, or a partial copy, leaves it cut. Right (issue 11: one bad input never costs the run):
    that dataset is failed/partial with the parse error (file and line) as its reason and the other datasets'
    scores and predictions are stored; actual: ``prediction_batches`` raises ResultParseError and ``budeval
    extract`` stores nothing at all ("no evaluation ... in the store"), not even tiny_qa's 5 good predictions."""
    work = copy("opencompass/two_datasets_one_fails", tmp_path)
    bad = next(run_folder(work).glob("predictions/*/bad_eval_ds.json"))
    bad.write_bytes(bad.read_bytes()[:300])
    got = rows(work)
    assert "tiny_qa" in got.dataset


def test_results_file_with_a_byte_order_mark_still_scores(tmp_path: Path) -> None:
    """A results file re-saved by a Windows editor (a hand-edited run folder) starts with a UTF-8 BOM. The summary
    reader strips a BOM (``summary.py``), the results reader does not: ``json.loads`` refuses it, so the dataset
    becomes failed "results file unreadable ... Unexpected UTF-8 BOM" and its verdicts are lost. Right: the BOM is
    not content (score 25.0, status ok)."""
    work = copy("opencompass/mcq", tmp_path)
    results = next(run_folder(work).glob("results/*/tiny_mcq.json"))
    results.write_bytes(b"\xef\xbb\xbf" + results.read_bytes())
    run = parse_run(work, workers=0)
    assert [s.status for s in run.statuses] == ["ok"], run.statuses
