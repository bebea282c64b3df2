"""The chart's Grafana dashboard (charts/budeval/dashboards/budeval.json, docs/grafana.md): valid against Grafana's
dashboard schema (vendored by scripts/vendor_grafana_schema.sh), every query run on a real chDB store filled from
real OpenCompass output with the ClickHouse data source's macros expanded as the plugin expands them for a fixed
range, and the ConfigMap the chart renders for Grafana's dashboard sidecar (off by default)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from budeval.engine.results.run import parse_run
from budeval.storage.base import EvaluationRecord
from budeval.storage.clickhouse import ClickHouseStore
from tests.deploy.helm import CHART, find, helm, one, template

DASHBOARD = CHART / "dashboards" / "budeval.json"
SCHEMA = Path(__file__).with_name("grafana") / "dashboard.schema.json"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "opencompass"
PLUGIN = "grafana-clickhouse-datasource"

#: The fixed range the queries run over (the fixtures' OpenCompass runs are from 2026-11-23).
FROM = datetime(2026, 11, 20, tzinfo=UTC)
TO = datetime(2026, 11, 30, tzinfo=UTC)
INTERVAL_S = 3600


def expand_macros(sql: str, start: datetime = FROM, end: datetime = TO, interval_s: int = INTERVAL_S) -> str:
    """The macros of the ClickHouse data source (grafana/clickhouse-datasource pkg/macros/macros.go, v4) as it
    expands them for the range [start, end]; any other ``$__`` macro fails the test (the plugin would refuse it)."""
    since, until = int(start.timestamp()), int(end.timestamp())
    since_ms, until_ms = since * 1000, until * 1000
    day = "%Y-%m-%d"
    with_column = {
        "timeFilter": lambda c: f"{c} >= toDateTime({since}) AND {c} <= toDateTime({until})",
        "timeFilter_ms": lambda c: f"{c} >= fromUnixTimestamp64Milli({since_ms}) AND {c} <= "
                                   f"fromUnixTimestamp64Milli({until_ms})",
        "dateFilter": lambda c: f"{c} >= toDate('{start.strftime(day)}') AND {c} <= toDate('{end.strftime(day)}')",
        "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {max(interval_s, 1)} second)",
    }
    plain = {"fromTime": f"toDateTime({since})", "toTime": f"toDateTime({until})",
             "fromTime_ms": f"fromUnixTimestamp64Milli({since_ms})",
             "toTime_ms": f"fromUnixTimestamp64Milli({until_ms})", "interval_s": str(max(interval_s, 1))}
    sql = re.sub(r"\$__(\w+)\(([^()]*)\)",
                 lambda m: with_column[m.group(1)](m.group(2).strip()) if m.group(1) in with_column
                 else pytest.fail(f"macro $__{m.group(1)} is not one the ClickHouse data source knows"), sql)
    sql = re.sub(r"\$__(\w+)(\(\))?", lambda m: plain.get(m.group(1)) or pytest.fail(f"unknown macro {m.group(0)}"),
                 sql)
    return sql


def expand_variables(sql: str, values: dict[str, list[str]]) -> str:
    """Grafana's ``${name:singlequote}`` and ``$name`` for multi-value variables (``All``: their allValue)."""
    def quoted(m: re.Match[str]) -> str:
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values[m.group(1)])

    sql = re.sub(r"\$\{(\w+):singlequote\}", quoted, sql)
    assert "$" not in sql.replace("$__", ""), f"a variable left in: {sql}"
    return sql


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queries() -> list[tuple[str, str]]:
    """(panel title, rawSql) of every panel's target."""
    return [(p["title"], t["rawSql"]) for p in dashboard()["panels"] for t in p.get("targets", [])]


# -- the JSON ----------------------------------------------------------------------------------------------------
def test_the_dashboard_is_valid_against_grafanas_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(dashboard())]
    assert not errors, "\n".join(errors)
    broken = dashboard()
    broken["panels"][0]["gridPos"]["width"] = 3  # the check is strict: a field Grafana does not know is refused
    assert any("width" in e.message for e in validator.iter_errors(broken))


def test_every_panel_queries_the_clickhouse_plugin_through_the_datasource_variable() -> None:
    board = dashboard()
    [source] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == PLUGIN
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": PLUGIN, "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["type"] == PLUGIN and target["editorType"] == "sql"
            assert target["queryType"] in ("timeSeries", "table")
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for wanted in ("evaluations per day", "failure rate", "score trends per model and dataset",
                   "extraction latency"):
        assert wanted in titles


# -- the SQL on a real store ---------------------------------------------------------------------------------------
@pytest.fixture
def filled(store: ClickHouseStore) -> Iterator[ClickHouseStore]:
    """Three evaluations from real OpenCompass output: completed (two runs), partial (one dataset failed), failed
    (no run stored); one outside the range; each finished run with its extraction time in the provenance."""
    def record(eval_id: str, status: str, day: int, collect: dict[str, float]) -> None:
        at = datetime(2026, 11, day, 12, tzinfo=UTC)
        store.record_evaluation(EvaluationRecord(
            eval_id=eval_id, status=status, created_at=at, finished_at=at,  # type: ignore[arg-type]
            provenance={"timings": {"runs": {run: {"queued_s": 1.0, "run_s": 30.0, "collect_s": seconds}
                                             for run, seconds in collect.items()}}}))

    store.store_run("ev-ok", "r0", parse_run(FIXTURES / "qa_chat"))
    store.store_run("ev-ok", "r1", parse_run(FIXTURES / "mcq"))
    record("ev-ok", "completed", 23, {"r0": 0.5, "r1": 1.5})
    store.store_run("ev-partial", "r0", parse_run(FIXTURES / "two_datasets_one_fails"))
    record("ev-partial", "partial", 23, {"r0": 2.0})
    record("ev-failed", "failed", 24, {})
    record("ev-old", "completed", 1, {"r0": 99.0})
    yield store


def _run(store: ClickHouseStore, sql: str, values: dict[str, list[str]] | None = None) -> list[tuple[Any, ...]]:
    values = values or {"model": ["__all"], "dataset": ["__all"]}
    return store._rows("dashboard query", expand_variables(expand_macros(sql), values))


def test_every_query_runs_on_the_real_store_and_answers_what_its_panel_says(filled: ClickHouseStore) -> None:
    answers = {title: _run(filled, sql) for title, sql in queries()}
    assert answers["Evaluations"] == [(3,)]  # ev-old is outside the range
    assert answers["Failure rate"] == [(pytest.approx(1 / 3),)]
    per_day = {(row[0].day, row[1]): row[2] for row in answers["Evaluations per day"]}
    assert per_day == {(23, "completed"): 1, (23, "partial"): 1, (24, "failed"): 1}
    rates = {row[0].day: (row[1], row[2]) for row in answers["Failure rate per day"]}
    assert rates == {23: (0.0, 0.5), 24: (1.0, 0.0)}
    trends = answers["Score trends per model and dataset"]
    assert trends and all(isinstance(row[2], float) for row in trends)
    series = {row[1] for row in trends}
    assert len(series) >= 2 and all(s.count(" / ") == 2 for s in series)
    latency = answers["Extraction latency"]
    assert [(row[0].day, row[3]) for row in latency] == [(23, 2.0)]  # max of the three runs of that day
    assert answers["Extraction p95"][0][0] == pytest.approx(1.9, abs=0.11)
    failures = answers["Dataset failures"]
    assert failures and all(row[2] != "ok" for row in failures)


def test_an_empty_range_has_no_failure_rate_rather_than_nan(store: ClickHouseStore) -> None:
    """No evaluation finished in the range: the stat says no data (NULL), not NaN (0 / 0)."""
    [(rate,)] = _run(store, next(sql for title, sql in queries() if title == "Failure rate"))
    assert rate is None


def test_the_variables_list_their_values_and_filter_the_panels(filled: ClickHouseStore) -> None:
    board = dashboard()
    listed = {v["name"]: [r[0] for r in _run(filled, v["query"])] for v in board["templating"]["list"]
              if v["type"] == "query"}
    assert listed["model"] and listed["dataset"]
    sql = next(sql for title, sql in queries() if title.startswith("Score trends"))
    every = _run(filled, sql)
    one_dataset = every[0][1].split(" / ")[1]
    assert one_dataset in listed["dataset"]
    only = _run(filled, sql, {"model": listed["model"][:1], "dataset": [one_dataset]})
    assert only and len(only) < len(every) and all(f" / {one_dataset} / " in row[1] for row in only)


def test_the_macro_expansion_is_the_plugins() -> None:
    assert expand_macros("$__timeFilter(t)") == "t >= toDateTime(1795132800) AND t <= toDateTime(1795996800)"
    assert expand_macros("$__timeInterval(t) $__fromTime") == (
        "toStartOfInterval(toDateTime(t), INTERVAL 3600 second) toDateTime(1795132800)")
    with pytest.raises(pytest.fail.Exception):
        expand_macros("$__timeGroup(t, '1h')")


# -- the chart -----------------------------------------------------------------------------------------------------
def test_the_dashboard_configmap_is_off_by_default() -> None:
    assert not [d for d in find(template(), "ConfigMap") if "grafana" in d["metadata"]["name"]]


def test_the_dashboard_configmap_carries_the_json_and_the_sidecar_label() -> None:
    docs = template(sets=["grafana.dashboard.enabled=true", "grafana.dashboard.annotations.grafana_folder=budeval",
                          "grafana.dashboard.namespace=monitoring"])
    [cm] = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"] == "budeval-grafana-dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "budeval"}
    assert cm["metadata"]["namespace"] == "monitoring"
    assert json.loads(cm["data"]["budeval.json"]) == dashboard()
    relabelled = template(sets=["grafana.dashboard.enabled=true", "grafana.dashboard.labels.grafana_dashboard=null",
                                "grafana.dashboard.labels.team-dashboards=yes"])
    labels = one(relabelled, "ConfigMap", "budeval-grafana-dashboard")["metadata"]["labels"]
    assert labels.get("team-dashboards") == "yes" and "grafana_dashboard" not in labels


def test_the_chart_with_the_dashboard_lints_strict_and_validates() -> None:
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART), "--set", "grafana.dashboard.enabled=true")
    cm = one(template(sets=["grafana.dashboard.enabled=true"]), "ConfigMap", "budeval-grafana-dashboard")
    kubernetes_validate.validate(cm, "1.33.0", strict=True)
