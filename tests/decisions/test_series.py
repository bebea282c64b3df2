"""Checkpoint series on the real chDB store: four checkpoints of one experiment written through the store's write API
(planted per-example histories, and real OpenCompass output through the real reader), read back by the series SQL;
``budeval series`` and ``GET /series/{series}``. These series use experiment_id + the step label: the fallback for rows
without checkpoint columns (the columns: test_series_checkpoint.py)."""

from __future__ import annotations

import json

import httpx
import pytest

from budeval.cli.main import main
from budeval.config import Settings
from budeval.decisions.series import MAX_LISTED, build_series, score_ci
from budeval.errors import NotFoundError, ValidationError
from budeval.events.publisher import MemoryPublisher
from budeval.service.app import ServiceDeps, create_app
from budeval.service.auth import Auth
from budeval.storage.base import EvaluationRecord
from budeval.storage.clickhouse import ClickHouseStore
from budeval.storage.factory import open_store
from tests.service.support import StandInBackend, StandInWorkflows, serve_app

from .support import OPENCOMPASS, REALWORLD, PlantedRun, Row, record, record_fixture

#: qa: one example of each kind over four checkpoints (R right, W wrong)
HISTORIES = {
    0: "RRRR",  # easy
    1: "WWWW",  # hard
    2: "WRRR",  # learned at the second checkpoint
    3: "WWWR",  # learned late, at the fourth
    4: "RRWW",  # forgotten
    5: "WRWR",  # unstable
}
STEPS = (100, 200, 300, 400)
TOKEN = "series-token"


def _checkpoint_rows(k: int) -> list[Row]:
    rows: list[Row] = [("qa", i, 0, h[k] == "R", None) for i, h in HISTORIES.items()]
    # big: 400 examples, 200 right at first; later checkpoints gain 4, 60 and 80 of the wrong ones
    gained = (0, 4, 60, 80)[k]
    rows += [("big", i, 0, i < 200 + gained, None) for i in range(400)]
    # rep: two replicas per example; example i right in replica r when (i + r + k) is even, so each example is half
    rows += [("rep", i, r, (i + r + k) % 2 == 0, None) for i in range(50) for r in range(2)]
    return rows


def _fill(store: ClickHouseStore) -> None:
    # created out of training order: the step label decides the order
    for k in (2, 0, 3, 1):
        record(store, f"ck-{STEPS[k]}", PlantedRun(_checkpoint_rows(k), model=f"ckpt-{STEPS[k]}"),
               experiment="run-7", labels={"step": str(STEPS[k])}, order=k * 7 % 4)
    record(store, "other-exp", PlantedRun(_checkpoint_rows(3)), experiment="run-8")
    store.store_run("failed-ck", "r0", PlantedRun(_checkpoint_rows(0)))  # type: ignore[arg-type]
    store.record_evaluation(EvaluationRecord(eval_id="failed-ck", status="failed", experiment_id="run-7",
                                             labels={"step": "50"}))


@pytest.fixture
def series_store(store: ClickHouseStore) -> ClickHouseStore:
    _fill(store)
    return store


def test_checkpoints_in_step_order_without_failed_or_foreign_ones(series_store: ClickHouseStore) -> None:
    cps = series_store.series_checkpoints("run-7")
    assert [(c.position, c.eval_id, c.step) for c in cps] == [
        (0, "ck-100", 100), (1, "ck-200", 200), (2, "ck-300", 300), (3, "ck-400", 400),
    ]


def test_learning_curve_transitions_and_kinds(series_store: ClickHouseStore) -> None:
    report = build_series(series_store, "run-7", limit=5)
    qa = next(d for d in report.datasets if d.dataset == "qa")
    assert [round(p.score, 2) for p in qa.points] == [33.33, 66.67, 33.33, 66.67]
    assert [(p.learned, p.forgotten) for p in qa.points] == [(0, 0), (2, 0), (0, 2), (2, 0)]
    assert all(p.ci_low < p.score < p.ci_high for p in qa.points)
    assert qa.kinds == {"easy": 1, "hard": 1, "learned": 2, "forgotten": 1, "unstable": 1}
    assert qa.flips == 6
    assert [e.example_index for e in qa.examples["learned"]] == [3, 2]  # the latest learned first
    assert [e.first_right_eval_id for e in qa.examples["learned"]] == ["ck-400", "ck-200"]
    assert [e.example_index for e in qa.examples["hard"]] == [1]
    assert [e.example_index for e in qa.examples["easy"]] == [0]
    assert [e.example_index for e in qa.examples["forgotten"]] == [4]
    assert qa.examples["hard"][0].prompt == "USER: question 1 of qa" and qa.examples["hard"][0].gold == "gold 1"
    assert qa.best is not None and qa.best.eval_id == "ck-200"  # ties go to the earlier checkpoint


def test_significance_against_the_first_checkpoint(series_store: ClickHouseStore) -> None:
    report = build_series(series_store, "run-7", dataset="big")
    [big] = report.datasets
    assert [p.score for p in big.points] == [50.0, 51.0, 65.0, 70.0]
    assert big.points[0].p_vs_first is None
    assert [p.delta_vs_first for p in big.points[1:]] == [1.0, 15.0, 20.0]
    assert big.points[1].p_vs_first == pytest.approx(0.125)  # 4 gains, 0 losses: 2 / 2^4
    assert not big.points[1].significant and big.points[2].significant and big.points[3].significant
    assert big.points[2].p_adjusted == pytest.approx(2 * big.points[2].p_vs_first)  # Holm: 2nd smallest of 3
    assert big.first_significant_gain is not None and big.first_significant_gain.step == 300
    assert big.best is not None and big.best.step == 400
    assert big.kinds["learned"] == 80 and big.kinds["easy"] == 200 and big.kinds["hard"] == 120
    assert [e.first_right_position for e in big.examples["learned"][:2]] == [3, 3]


def test_replicas_are_examples_means(series_store: ClickHouseStore) -> None:
    [rep] = build_series(series_store, "run-7", dataset="rep").datasets
    # each example is right in one of its two replicas: 50% with no spread, and "right" (at least half) throughout
    assert [p.score for p in rep.points] == [50.0] * 4
    # no spread between examples, but 50 examples do not fix the score: at least Wilson's interval of 25 of 50
    assert all(p.ci_low == pytest.approx(36.64, abs=0.01) and p.ci_high == pytest.approx(63.36, abs=0.01)
               for p in rep.points)
    assert rep.kinds["easy"] == 50


def test_score_ci() -> None:
    low, high = score_ci(0.5, 0.25, 100, 1, 0.95)  # Wilson, 50 of 100
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    low, high = score_ci(1.0, 0.0, 4, 1, 0.95)
    assert high == 1.0 and 0.4 < low < 0.6


def test_unknown_series_and_dataset(series_store: ClickHouseStore) -> None:
    with pytest.raises(NotFoundError):
        build_series(series_store, "nope")
    with pytest.raises(NotFoundError, match="no per-example verdicts on dataset"):
        build_series(series_store, "run-7", dataset="nope")


@pytest.mark.parametrize("limit", [-1, MAX_LISTED + 1, 2**64])
def test_listed_examples_out_of_range_is_a_usage_error(series_store: ClickHouseStore, limit: int) -> None:
    """Not a store error from ClickHouse (a UInt64 overflow in bitmapSubsetLimit / LIMIT BY): a typed error naming
    the parameter, before any query (the CLI's exit 3, the API's 422)."""
    with pytest.raises(ValidationError, match=r"examples: must be 0\.\.1000"):
        build_series(series_store, "run-7", limit=limit)
    assert build_series(series_store, "run-7", limit=MAX_LISTED).datasets


@pytest.mark.parametrize("name", ["", " ", "../x", "a b", "x" * 129])
def test_a_name_that_cannot_be_a_series_is_a_usage_error(series_store: ClickHouseStore, name: str) -> None:
    """Series "" (a script's unset ``$SERIES``) matched every evaluation without a checkpoint block: a report over
    unrelated evaluations. Any name a request could not carry (``SeriesName``) is refused before a query."""
    record(series_store, "stray", PlantedRun([("q", 0, 0, True, None)]), order=9)
    with pytest.raises(ValidationError, match="series"):
        build_series(series_store, name)


@pytest.mark.parametrize("from_sets", [True, False])
def test_many_datasets_list_every_kind_up_to_the_limit(store: ClickHouseStore, from_sets: bool) -> None:
    """A broad suite (260 subsets, like MMLU + CMMLU + C-Eval + BBH) lists up to MAX_LISTED examples per kind and
    dataset: the listed examples' keys went into one literal over ClickHouse's default max_query_size (256 KiB), so
    the series failed with a store error even with the default 10 (the store's sessions raise the limit)."""
    names = [f"opencompass_suite_subset_name_{j:03d}" for j in range(260)]
    histories = ("RR", "WW", "WR", "RW")
    for k in range(2):
        rows: list[Row] = [(n, i, 0, histories[i % 4][k] == "R", None) for n in names for i in range(48)]
        record(store, f"e{k}", PlantedRun(rows), checkpoint=("wide", k, None), order=k)
    store.decisions_from_sets = from_sets
    for limit in (10, MAX_LISTED):
        report = build_series(store, "wide", limit=limit)
        assert len(report.datasets) == 260
        for d in report.datasets:
            n = min(limit, 12)  # 12 of each kind per dataset
            assert {k: len(v) for k, v in d.examples.items()} == {"easy": n, "hard": n, "forgotten": n, "learned": n}
            assert all(e.prompt for v in d.examples.values() for e in v)


def test_series_of_real_outputs(store: ClickHouseStore) -> None:
    # four real evaluations of one experiment: the mcq output, then the greedy and sampled n=2 runs, then mcq again
    folders = (OPENCOMPASS / "mcq", REALWORLD / "n-replicas" / "run", REALWORLD / "n-replicas" / "run_sampled",
               OPENCOMPASS / "mcq")
    for k, folder in enumerate(folders):
        record_fixture(store, f"real-{k}", folder, experiment="real", labels={"step": str(k * 10)}, order=k)
    [mcq] = build_series(store, "real").datasets
    assert mcq.dataset == "tiny_mcq" and [p.examples for p in mcq.points] == [4, 4, 4, 4]
    assert [p.score for p in mcq.points] == [25.0, 25.0, 37.5, 25.0]
    # example 0: wrong, wrong, half right (counted right), wrong -> forgotten; example 3 always right
    assert mcq.kinds["easy"] == 1 and mcq.kinds["forgotten"] == 1 and mcq.kinds["hard"] == 2
    assert [(p.learned, p.forgotten) for p in mcq.points] == [(0, 0), (0, 0), (1, 0), (0, 1)]
    assert mcq.examples["forgotten"][0].prompt.startswith("HUMAN: Question: What is 2+2?")


def test_cli_and_api(tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    dsn = f"chdb://{tmp_path_factory.mktemp('series-cli') / 'ch'}"
    filled = open_store(dsn)
    filled.migrate()
    _fill(filled)
    filled.close()
    capsys.readouterr()  # the store's own log lines
    assert main(["series", "run-7", "--dataset", "qa", "--store", dsn, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["eval_id"] for p in doc["datasets"][0]["points"]] == ["ck-100", "ck-200", "ck-300", "ck-400"]
    assert main(["series", "run-7", "--store", dsn]) == 0
    text = capsys.readouterr().out
    assert "series run-7: 4 checkpoints" in text
    assert "first significant gain over the first checkpoint: step 300" in text
    assert "learned: #3 (from ck-400)" in text
    assert main(["series", "nope", "--store", dsn]) == 1
    assert "no finished evaluation in series 'nope'" in capsys.readouterr().err
    served = open_store(dsn)
    app = create_app(ServiceDeps(Settings(data_dir=tmp_path_factory.mktemp("series-api")), StandInWorkflows(), served,
                                 StandInBackend(), MemoryPublisher(), {}, Auth(TOKEN)))
    try:
        with serve_app(app) as url:
            auth = {"authorization": f"Bearer {TOKEN}"}
            body = httpx.get(f"{url}/series/run-7", params={"dataset": "big"}, headers=auth, timeout=60).json()
            assert body["datasets"][0]["first_significant_gain"]["step"] == 300
            assert httpx.get(f"{url}/series/nope", headers=auth, timeout=60).status_code == 404
            assert httpx.get(f"{url}/series/run-7", timeout=60).status_code == 401
            assert httpx.get(f"{url}/series/run-7", params={"alpha": 2}, headers=auth, timeout=60).status_code == 422
    finally:
        served.close()



def test_decision_queries_have_no_semicolon() -> None:
    """clickhouse-connect tokenises a whole bound statement in Python when it holds a ``;`` (even in a comment): ~2 ms
    of the series' time (budeval/storage/decision_queries.py)."""
    from budeval.storage import decision_queries as q

    texts = [v for v in vars(q).values() if isinstance(v, str) and "SELECT" in v]
    texts += [f(flag) for f in (q.paired_sql, q.paired_sets_sql, q.series_points_sql, q.series_kinds_sql,
                                q.series_sets_sql, q.series_matrix_sql) for flag in (False, True)]
    assert len(texts) > 10
    assert [t for t in texts if ";" in t] == []
