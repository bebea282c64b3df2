"""The result reader on real OpenCompass output (tests/fixtures/opencompass, made by scripts/make_fixtures.sh) and on
broken copies of it made here: truncated, garbled, empty, non-UTF-8, sharded and very large files."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import pytest

from budeval.engine.results import loading as loading_module
from budeval.engine.results import parse_run
from budeval.engine.results import predictions as predictions_module
from budeval.engine.results import run as run_module
from budeval.engine.results import verdicts as verdicts_module
from budeval.engine.results.jsonstream import JsonStream
from budeval.errors import NoSummaryError, ResultParseError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "opencompass"
MODEL = "smollm2-135m-instruct"


def copy(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(FIXTURES / name, dest)
    return dest


def ts_folder(work: Path) -> Path:
    return next(p for p in work.iterdir() if p.is_dir() and p.name[0].isdigit())


def all_predictions(work: Path) -> dict[str, list[object]]:
    run = parse_run(work)
    columns: dict[str, list[object]] = {
        k: [] for k in ("model", "dataset", "example_index", "prompt", "prediction", "gold", "correct")
    }
    for batch in run.prediction_batches(batch_size=3):
        for key, values in columns.items():
            values.extend(getattr(batch, key))
    return columns


def failed_predictions(work: Path, workers: int | None = None) -> ResultParseError:
    """The one predictions error of a run: recorded on its dataset (status not ok, the error in the reason) while
    the rest of the run is read."""
    run = parse_run(work, workers=workers)
    for _ in run.prediction_batches(batch_size=3):
        pass
    [(pair, error)] = run.prediction_errors.items()
    [status] = [s for s in run.statuses if (s.model, s.dataset) == pair]
    assert status.status != "ok" and str(error) in (status.reason or "")
    return error


def test_hf_chat_model_on_qa() -> None:
    run = parse_run(FIXTURES / "qa_chat")
    assert run.facts.models == [MODEL] and run.facts.datasets == ["tiny_qa"]
    assert run.facts.summary_file.endswith(".csv") and run.facts.config_file is not None
    [row] = run.metrics
    assert (row.model, row.dataset, row.metric, row.score, row.version, row.mode) == (
        MODEL,
        "tiny_qa",
        "accuracy",
        0.0,
        "359d58",
        "gen",
    )
    assert [s.status for s in run.statuses] == ["ok"]
    preds = all_predictions(FIXTURES / "qa_chat")
    assert preds["example_index"] == [0, 1, 2, 3, 4]
    assert preds["prompt"][0] == "HUMAN: What is 2+3? Reply with only the number.\n"  # chat turns as text
    assert preds["gold"][1] == "Paris" and preds["prediction"][1] == "The capital of France is Paris."


def test_predictions_can_be_read_twice() -> None:
    run = parse_run(FIXTURES / "qa_chat")
    first = sum(len(b) for b in run.prediction_batches())
    assert first == 5 and sum(len(b) for b in run.prediction_batches()) == first


def test_correct_flags_from_list_shaped_details() -> None:
    run = parse_run(FIXTURES / "mcq")
    assert run.metrics[0].score == 25.0
    preds = all_predictions(FIXTURES / "mcq")
    assert preds["correct"].count(True) == 1 and preds["correct"].count(False) == 3


def test_verdict_keys_inside_strings_do_not_confuse_the_reader(tmp_path: Path) -> None:
    work = copy("mcq", tmp_path)
    result = next((ts_folder(work) / "results" / MODEL).glob("*.json"))
    data = json.loads(result.read_text())
    data["details"][0]["pred"] = ['"correct": [true], "example_abbr": "tiny_mcq_3"']
    del data["details"][1]["example_abbr"]  # counted by position
    result.write_text(json.dumps(data))
    assert all_predictions(work)["correct"] == all_predictions(FIXTURES / "mcq")["correct"]


def test_correct_flags_from_dict_shaped_details(tmp_path: Path) -> None:
    work = copy("qa_chat", tmp_path)
    result = ts_folder(work) / "results" / MODEL / "tiny_qa.json"
    data = json.loads(result.read_text())
    for key, item in data["details"].items():
        if key.isdigit():
            item["correct"] = key == "2"
    result.write_text(json.dumps(data))
    assert all_predictions(work)["correct"] == [False, False, True, False, False]


def test_two_models_one_fails() -> None:
    run = parse_run(FIXTURES / "two_models_one_fails")
    assert run.facts.models == [MODEL, "missing-model"]
    scores = {(m.model, m.dataset): m.score for m in run.metrics}
    assert scores == {(MODEL, "tiny_qa"): 0.0, ("missing-model", "tiny_qa"): None}
    status = {(s.model, s.dataset): s for s in run.statuses}
    assert status[(MODEL, "tiny_qa")].status == "ok"
    failed = status[("missing-model", "tiny_qa")]
    assert failed.status == "failed" and failed.reason and "infer" in failed.reason
    assert set(all_predictions(FIXTURES / "two_models_one_fails")["model"]) == {MODEL}


def test_two_datasets_one_fails_at_eval_with_an_all_dash_row() -> None:
    run = parse_run(FIXTURES / "two_datasets_one_fails")
    bad = [m for m in run.metrics if m.dataset == "bad_eval_ds"]
    assert [(m.metric, m.version, m.mode, m.score) for m in bad] == [("-", "-", "-", None)]
    status = {s.dataset: s for s in run.statuses}
    assert status["tiny_qa"].status == "ok"
    assert status["bad_eval_ds"].status == "failed" and "no_such_option" in (status["bad_eval_ds"].reason or "")
    preds = all_predictions(FIXTURES / "two_datasets_one_fails")
    assert preds["dataset"].count("bad_eval_ds") == 3  # inference worked: its predictions are kept


def test_reuse_newest_summary_wins() -> None:
    run = parse_run(FIXTURES / "reuse")
    csvs = sorted((ts_folder(FIXTURES / "reuse") / "summary").glob("summary_*.csv"))
    assert len(csvs) == 2 and run.facts.summary_file.endswith(csvs[-1].name)
    assert run.metrics[0].score == 0.0 and run.statuses[0].status == "ok"  # the older summary had '-'


def test_a_newer_folder_without_output_is_the_run_and_the_error_says_so(tmp_path: Path) -> None:
    work = copy("qa_chat", tmp_path)
    (work / "29990101_000000" / "configs").mkdir(parents=True)  # a newer attempt that aborted
    with pytest.raises(NoSummaryError, match="29990101_000000 has no usable summary, no results and no pred") as info:
        parse_run(work)  # never the older, complete folder in its place
    assert "1 older folder(s) not used" in str(info.value)


def test_aborted_run_has_no_summary() -> None:
    with pytest.raises(NoSummaryError, match="no usable summary") as info:
        parse_run(FIXTURES / "aborted")
    assert info.value.reason == "no_summary"


def test_missing_folder_is_no_summary(tmp_path: Path) -> None:
    with pytest.raises(NoSummaryError):
        parse_run(tmp_path / "nothing-here")


def test_sharded_predictions_are_joined_in_order(tmp_path: Path) -> None:
    work = copy("qa_chat", tmp_path)
    folder = ts_folder(work) / "predictions" / MODEL
    whole = json.loads((folder / "tiny_qa.json").read_text())
    (folder / "tiny_qa.json").unlink()
    items = [whole[str(i)] for i in range(5)]
    (folder / "tiny_qa_0.json").write_text(json.dumps({str(i): items[i] for i in range(3)}))
    (folder / "tiny_qa_1.json").write_text(json.dumps({str(i): items[3 + i] for i in range(2)}))
    preds = all_predictions(work)
    assert preds["example_index"] == [0, 1, 2, 3, 4]
    assert preds["gold"] == [item["gold"] for item in items]


@pytest.mark.parametrize(
    ("content", "note"),
    [
        (b"", ":1: empty summary"),
        (b"dataset,version,metric,mode,m\ntiny_qa,359d58,accuracy\n", ":2: summary line 2 has 3 cells"),  # truncated
        (b"\x89PNG\r\n\x1a\n\x00\x00garbage", ":1: not an OpenCompass summary layout"),
        (b"dataset,version,metric,mode,m\ntiny_qa,359d58,accuracy,gen,12.x\n", ":2: m tiny_qa: accuracy '12.x' is not"),
    ],
)
def test_a_broken_summary_is_noted_and_the_results_files_still_score(tmp_path: Path, content: bytes, note: str) -> None:
    work = copy("qa_chat", tmp_path)
    [summary] = (ts_folder(work) / "summary").glob("summary_*.csv")
    summary.write_bytes(content)
    run = parse_run(work)
    assert any(summary.name + note in n for n in run.facts.notes), run.facts.notes
    ours = [m for m in run.metrics if m.model == MODEL]
    assert [(m.dataset, m.metric, m.score) for m in ours] == [("tiny_qa", "accuracy", 0.0)]
    assert [s.status for s in run.statuses if s.model == MODEL] == ["ok"]
    assert len(all_predictions(work)["example_index"]) == 5


def _predictions_file(work: Path) -> Path:
    return ts_folder(work) / "predictions" / MODEL / "tiny_qa.json"


@pytest.mark.parametrize("cut", ["empty", "truncated", "garbled", "not-an-object"])
def test_broken_predictions_name_file_and_line(tmp_path: Path, cut: str) -> None:
    work = copy("qa_chat", tmp_path)
    path = _predictions_file(work)
    text = path.read_text()
    broken = {
        "empty": "",
        "truncated": text[: len(text) * 2 // 3],
        "garbled": text.replace('"prediction":', '"prediction" ::', 1),
        "not-an-object": "[1, 2, 3]",
    }[cut]
    path.write_text(broken)
    error = failed_predictions(work)
    assert error.path is not None and error.path.endswith("tiny_qa.json")
    assert error.line is not None and error.line >= 1
    if cut == "garbled":
        assert error.line == text[: text.index('"prediction":')].count("\n") + 1


@pytest.mark.parametrize("streamed", [False, True])
def test_non_utf8_bytes_are_replaced_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool) -> None:
    if streamed:
        for module in (loading_module, verdicts_module, run_module):
            monkeypatch.setattr(module, "WHOLE_FILE_LIMIT", 0)
    work = copy("qa_chat", tmp_path)
    path = _predictions_file(work)
    raw = path.read_bytes().replace(b"Paris", b"Par\xff\xfeis", 1)
    path.write_bytes(raw)
    preds = all_predictions(work)
    assert len(preds["example_index"]) == 5
    assert "Par\ufffd\ufffdis" in "".join(str(p) for p in preds["prediction"] + preds["gold"])


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_stream_matches_json_load_whatever_the_window(chunk: int) -> None:
    for path in sorted(FIXTURES.glob("*/2*/predictions/*/*.json")) + sorted(FIXTURES.glob("*/2*/results/*/*.json")):
        expected = json.loads(path.read_text())
        with JsonStream(path, chunk=chunk) as stream:
            assert stream.start() == "{"
            got = {key: stream.value() for key, _ in stream.items()}
            stream.finish()
        assert got == expected, path


def _peak_while_reading(tmp_path: Path, n: int, indented: bool) -> tuple[int, int]:
    work = copy("qa_chat", tmp_path / str(n))
    path = _predictions_file(work)
    prompt = "x" * 900
    with path.open("w") as out:  # written incrementally: n examples of ~1 KB, compact or as OpenCompass indents
        out.write("{")
        for i in range(n):
            entry = {
                "origin_prompt": [{"role": "HUMAN", "prompt": f"{prompt}{i}"}],
                "prediction": f"p{i}",
                "gold": f"g{i}",
            }
            member = json.dumps({str(i): entry}, indent=4 if indented else None)[1:-1]
            out.write(("," if i else "") + (member.rstrip("\n") if indented else member))
        out.write("\n}" if indented else "}")
    assert json.loads(path.read_text())[str(n - 1)]["gold"] == f"g{n - 1}"
    run = parse_run(work, workers=0)
    tracemalloc.start()
    seen = 0
    for batch in run.prediction_batches(batch_size=1000):
        seen += len(batch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seen == n
    return peak, path.stat().st_size


@pytest.mark.parametrize("indented", [False, True])
def test_huge_predictions_stream_with_bounded_memory(tmp_path: Path, indented: bool) -> None:
    small_peak, _ = _peak_while_reading(tmp_path, 25_000, indented)  # ~25 MB: above the whole-file limit: streamed
    big_peak, big_size = _peak_while_reading(tmp_path, 100_000, indented)  # ~100 MB
    assert big_peak < small_peak * 1.5, (small_peak, big_peak)  # memory does not grow with the file
    assert big_peak < big_size / 2, (big_peak, big_size)  # json.load would need several times the file


@pytest.mark.parametrize("damage", ["none", "bad-bytes", "truncated", "garbled"])
def test_indented_fast_path_cuts_between_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    monkeypatch.setattr(loading_module, "WHOLE_FILE_LIMIT", 0)
    monkeypatch.setattr(predictions_module, "INDENTED_CHUNK", 97)  # many cuts, some inside strings' text
    work = copy("mcq", tmp_path)
    path = next((ts_folder(work) / "predictions" / MODEL).glob("*.json"))
    raw = path.read_bytes()
    assert raw.startswith(b'{\n    "0": {')  # the layout the fast path relies on
    expected = all_predictions(FIXTURES / "mcq")
    if damage == "bad-bytes":  # in the last member: the general streamer takes over without repeating rows
        path.write_bytes(raw[:-60] + b"\xff" + raw[-60:])
        got = all_predictions(work)
        assert got["example_index"] == expected["example_index"] and got["correct"] == expected["correct"]
        return
    if damage == "none":
        assert all_predictions(work) == expected
        return
    broken = raw[: len(raw) * 3 // 4] if damage == "truncated" else raw.replace(b'"gold":', b'"gold" ::', 3)
    path.write_bytes(broken)
    error = failed_predictions(work)
    assert error.path is not None and error.line is not None and error.line > 1


def test_version_from_the_rendered_config() -> None:
    run = parse_run(FIXTURES / "qa_chat")
    assert run.facts.opencompass_version == "0.5.4"


def test_reuse_config_file_is_the_one_of_the_newest_summary() -> None:
    run = parse_run(FIXTURES / "reuse")
    folder = ts_folder(FIXTURES / "reuse")
    configs = sorted(p.name for p in (folder / "configs").glob("*.py"))
    newest = sorted((folder / "summary").glob("summary_*.csv"))[-1].stem.removeprefix("summary_")
    assert len(configs) == 2 and run.facts.config_file is not None
    assert Path(run.facts.config_file).name.startswith(newest + "_")


def test_failed_shard_logs_and_an_interrupted_inference_are_reported(tmp_path: Path) -> None:
    work = copy("two_models_one_fails", tmp_path)
    folder = ts_folder(work)
    log = folder / "logs" / "infer" / "missing-model" / "tiny_qa.out"
    log.rename(log.with_name("tiny_qa_0.out"))  # a dataset split into shards logs per shard
    (folder / "predictions" / "missing-model").mkdir(parents=True)
    (folder / "predictions" / "missing-model" / "tmp_tiny_qa.jsonl").write_text(
        '{"idx": 0, "origin_prompt": "q", "prediction": "a", "gold": "b"}\n{"idx": 1, "prediction": "c"}\n'
    )
    status = {s.model: s for s in parse_run(work).statuses}["missing-model"]
    assert status.status == "failed" and status.reason is not None
    assert status.reason.startswith("infer: ") and "inference stopped after 2 examples" in status.reason


def test_nan_in_a_results_file_is_read(tmp_path: Path) -> None:
    work = copy("mcq", tmp_path)
    result = next((ts_folder(work) / "results" / MODEL).glob("*.json"))
    result.write_text(result.read_text().replace('"accuracy": 25.0', '"accuracy": NaN', 1))
    assert "NaN" in result.read_text()  # what Python's json.dump writes for a float nan; orjson refuses it
    assert all_predictions(work)["correct"] == all_predictions(FIXTURES / "mcq")["correct"]


def test_non_utf8_bytes_in_the_summary_are_replaced(tmp_path: Path) -> None:
    work = copy("qa_chat", tmp_path)
    [summary] = (ts_folder(work) / "summary").glob("summary_*.csv")
    summary.write_bytes(summary.read_bytes().replace(b"tiny_qa", b"tiny_\xffqa"))
    rows = {row.dataset: row.score for row in parse_run(work).metrics}
    assert rows == {"tiny_\ufffdqa": 0.0, "tiny_qa": 0.0}  # the summary's row under its (damaged) name; the results


def _rows(work: Path, workers: int, units: int | None = None) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    run = parse_run(work, workers=workers)
    for batch in run.prediction_batches(batch_size=2):
        rows += zip(
            batch.model,
            batch.dataset,
            batch.example_index,
            batch.prompt,
            batch.prediction,
            batch.gold,
            batch.correct,
            strict=True,
        )
    files = len(list(ts_folder(work).glob("predictions/*/*.json")))
    # the workers did the reading (no silent fallback): one unit per small file, or per range of a large one
    assert run.worker_files == (0 if not workers else units if units is not None else files)
    return rows


def test_parse_worker_process_gives_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_module, "POOL_MIN_BYTES", 0)  # use the worker even for these small files
    work = copy("two_datasets_one_fails", tmp_path)
    here = _rows(work, workers=0)
    assert len(here) == 8 and _rows(work, workers=1) == here
    assert _rows(FIXTURES / "mcq", workers=1) == _rows(FIXTURES / "mcq", workers=0)


def test_parse_worker_process_raises_the_typed_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_module, "POOL_MIN_BYTES", 0)
    work = copy("qa_chat", tmp_path)
    path = _predictions_file(work)
    text = path.read_text()
    path.write_text(text.replace('"gold":', '"gold" ::', 1))
    error = failed_predictions(work, workers=1)
    assert error.path is not None and error.path.endswith("tiny_qa.json")
    assert error.line == text[: text.index('"gold":')].count("\n") + 1


def _by_index(work: Path) -> dict[object, tuple[object, ...]]:
    preds = all_predictions(work)
    return {
        i: (p, g, c)
        for i, p, g, c in zip(preds["example_index"], preds["prediction"], preds["gold"], preds["correct"], strict=True)
    }


def test_out_of_order_keys_keep_their_index_and_verdict(tmp_path: Path) -> None:
    work = copy("mcq", tmp_path)
    path = next((ts_folder(work) / "predictions" / MODEL).glob("*.json"))
    data = json.loads(path.read_text())
    path.write_text(json.dumps(dict(reversed(list(data.items())))))
    expected = _by_index(FIXTURES / "mcq")
    assert all_predictions(work)["example_index"] == sorted(expected, reverse=True)  # type: ignore[type-var]
    assert _by_index(work) == expected


@pytest.mark.parametrize("key", ["-1", "1_0", "x", "²"])
def test_a_key_that_is_not_an_index_is_a_parse_error(tmp_path: Path, key: str) -> None:
    work = copy("qa_chat", tmp_path)
    path = _predictions_file(work)
    data = json.loads(path.read_text())
    data[key] = data.pop("4")
    path.write_text(json.dumps(data))
    error = failed_predictions(work)
    assert "not an index" in str(error) and error.path is not None and error.path.endswith("tiny_qa.json")


@pytest.mark.parametrize("name", ["mcq", "two_datasets_one_fails", "qa_chat_with_verdicts"])
def test_streamed_paths_give_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    if name == "qa_chat_with_verdicts":  # dict-shaped details with a verdict per example
        work = copy("qa_chat", tmp_path)
        result = ts_folder(work) / "results" / MODEL / "tiny_qa.json"
        data = json.loads(result.read_text())
        for key, item in data["details"].items():
            if key.isdigit():
                item["correct"] = [key in ("1", "3")]
        result.write_text(json.dumps(data, indent=4))
    else:
        work = copy(name, tmp_path)
    whole = all_predictions(work)
    for module in (loading_module, verdicts_module, run_module):
        monkeypatch.setattr(module, "WHOLE_FILE_LIMIT", 0)  # every file is now "too large": streamed
    assert all_predictions(work) == whole
    assert any(c is not None for c in whole["correct"]) or name == "two_datasets_one_fails"


def test_summarizer_divider_rows_are_not_datasets(tmp_path: Path) -> None:
    work = copy("two_models_one_fails", tmp_path)
    [summary] = (ts_folder(work) / "summary").glob("summary_*.csv")
    header, *rows = summary.read_text().splitlines()
    divider = "--------- 考试 Exam ---------,-,-,-,-,-"  # as OpenCompass's summarizers write section headers
    summary.write_text("\n".join([header, divider, *rows]) + "\n")
    run = parse_run(work)
    assert run.facts.datasets == ["tiny_qa"] and {m.dataset for m in run.metrics} == {"tiny_qa"}
    assert len(run.statuses) == 2


@pytest.mark.parametrize("damage", ["none", "bad-bytes", "truncated", "garbled"])
def test_large_files_go_to_workers_in_member_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    monkeypatch.setattr(run_module, "POOL_MIN_BYTES", 0)
    monkeypatch.setattr(run_module, "WHOLE_FILE_LIMIT", 0)  # every file is "large"
    monkeypatch.setattr(predictions_module, "INDENTED_CHUNK", 97)  # ranges of one or a few members
    work = copy("mcq", tmp_path)
    path = next((ts_folder(work) / "predictions" / MODEL).glob("*.json"))
    raw = path.read_bytes()
    if damage == "bad-bytes":
        path.write_bytes(raw[:-60] + b"\xff" + raw[-60:])
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) * 3 // 4])
    elif damage == "garbled":
        path.write_bytes(raw.replace(b'"gold":', b'"gold" ::', 3))
    if damage in ("truncated", "garbled"):
        expected, got = failed_predictions(work, workers=0), failed_predictions(work, workers=1)
        assert (got.path, got.line) == (expected.path, expected.line)
        assert got.line is not None and got.line > 1
        return
    rows = _rows(work, workers=1, units=4)
    assert rows == _rows(work, workers=0)
    pristine = _rows(FIXTURES / "mcq", workers=0)
    if damage == "none":
        assert rows == pristine
    else:  # the bad byte became U+FFFD in one prediction; nothing else changed
        assert [r for r in rows if "\ufffd" not in str(r[4])] == [p for p in pristine if p[2] != 3]
