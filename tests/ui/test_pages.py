"""Every page of the web UI in real headless Chromium against a store filled from real OpenCompass outputs: it loads
with no console error, has no critical axe-core violation, is saved as a screenshot, and its controls work by clicks
(paging, sorting, dataset sets and tiers, filters, compare flips, the series heatmap, live status and cancel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from budeval.workflow import names
from tests.support import wait_until
from tests.ui.conftest import Served, Tab
from tests.ui.support import FAILED, RUNNING, SERIES, finish_running

PAGES = (
    ("leaderboard", "/ui/leaderboard"),
    ("evaluation", f"/ui/evals/{FAILED}"),
    ("compare", "/ui/compare?a=ui-ck-10&b=ui-ck-40"),
    ("series", f"/ui/series/{SERIES}"),
    ("series-example", f"/ui/series/{SERIES}/example?dataset=tiny_mcq&index=0"),
    ("series-list", "/ui/series"),
    ("examples", "/ui/examples"),
)


def axe_violations(tab: Tab, axe: str) -> list[dict[str, Any]]:
    """axe-core's violations of the page (id, impact, nodes); axe is evaluated through the DevTools protocol, so the
    page's Content-Security-Policy (no inline script) stays on."""
    tab.page.evaluate(Path(axe).read_text(encoding="utf-8") + "\n;true")
    return list(tab.page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help}))"
    ))


def column(tab: Tab, table: str, index: int) -> list[str]:
    return [t.strip() for t in tab.page.locator(f"#{table} tbody tr td:nth-child({index})").all_inner_texts()]


@pytest.mark.parametrize(("name", "path"), PAGES, ids=[p[0] for p in PAGES])
def test_page_loads_without_errors_or_critical_violations(tab: Tab, browser_parts: dict[str, str], name: str,
                                                          path: str) -> None:
    tab.login()
    tab.go(path)
    tab.page.wait_for_load_state("networkidle")
    assert tab.page.locator("h1").count() == 1
    assert tab.shot(name).stat().st_size > 1000
    critical = [v for v in axe_violations(tab, browser_parts["BUDEVAL_AXE"]) if v["impact"] == "critical"]
    assert not critical, critical


def test_leaderboard_paging_sorting_and_tiers_by_clicks(tab: Tab) -> None:
    tab.login()
    page = tab.page
    page.select_option("#datasets", ["planted_qa"])
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**datasets=planted_qa**")
    assert column(tab, "leaderboard", 2) == ["model-a", "model-b", "model-c", "model-d", "model-e"]
    tiers = dict(zip(column(tab, "leaderboard", 2), column(tab, "leaderboard", 3), strict=True))
    assert tiers["model-a"] == "1 · leader"
    assert tiers["model-b"] == "1 · tied with leader"  # 148 vs 150 of 200: not significant
    assert tiers["model-e"] == "2 · behind leader"  # 100 vs 150: McNemar p ~ 1e-15

    page.click("a.sort[data-sort=score]")  # first click on a score: highest first
    page.wait_for_url("**sort=score**")
    assert column(tab, "leaderboard", 2)[0] == "model-a"
    page.click("a.sort[data-sort=score]")  # again: lowest first
    page.wait_for_url("**dir=asc**")
    assert column(tab, "leaderboard", 2) == ["model-e", "model-d", "model-c", "model-b", "model-a"]
    scores = [float(s) for s in column(tab, "leaderboard", 4)]
    assert scores == sorted(scores)
    page.click("a.sort[data-sort=model]")
    page.wait_for_url("**sort=model**")
    assert column(tab, "leaderboard", 2) == sorted(column(tab, "leaderboard", 2))

    tab.go("/ui/leaderboard?size=2&datasets=planted_qa")
    assert column(tab, "leaderboard", 2) == ["model-a", "model-b"]
    page.click("nav.pager a[rel=next]")
    page.wait_for_url("**offset=2**")
    assert column(tab, "leaderboard", 2) == ["model-c", "model-d"]
    # against the leader on another page: 10 and 30 examples lost, none gained (McNemar p ~ 0.002 and ~ 2e-9)
    assert column(tab, "leaderboard", 3) == ["2 · behind leader", "2 · behind leader"]
    page.click("nav.pager a[rel=next]")
    assert column(tab, "leaderboard", 2) == ["model-e"]
    assert page.locator("nav.pager a[rel=next]").count() == 0
    page.click("nav.pager a[rel=prev]")
    assert column(tab, "leaderboard", 2) == ["model-c", "model-d"]
    page.click("#leaderboard tbody tr:first-child td a")  # a score cell links to its evaluation
    page.wait_for_url("**/ui/evals/ui-planted-model-c")


def test_examples_filters_and_paging_by_clicks(tab: Tab) -> None:
    tab.login()
    page = tab.page
    tab.go("/ui/examples")
    page.fill("#eval_id", "ui-qa")
    page.click("#example-filters button[type=submit]")
    page.wait_for_url("**eval_id=ui-qa**")
    assert set(column(tab, "examples", 1)) == {"ui-qa"}
    assert len(column(tab, "examples", 1)) == 5
    page.select_option("#correct", "unjudged")  # this real output's evaluator gave no per-example verdict
    page.fill("#text", "capital")
    page.click("#example-filters button[type=submit]")
    page.wait_for_url("**text=capital**")
    assert column(tab, "examples", 7) == ["\u2013"]
    assert "capital of France" in column(tab, "examples", 4)[0]

    tab.go("/ui/examples?size=10")
    page.select_option("#dataset", "planted_qa")
    page.select_option("#model", "model-e")
    page.select_option("#correct", "wrong")
    page.click("#example-filters button[type=submit]")
    page.wait_for_url("**model=model-e**")
    assert set(column(tab, "examples", 7)) == {"wrong"} and len(column(tab, "examples", 7)) == 10
    first = column(tab, "examples", 3)
    page.click("nav.pager a[rel=next]")
    page.wait_for_url("**offset=10**")
    assert column(tab, "examples", 3) != first and set(column(tab, "examples", 2)) == {"model-e"}


def test_compare_flips_by_clicks(tab: Tab) -> None:
    tab.login()
    page = tab.page
    tab.go("/ui/compare")
    page.fill("#a", "ui-planted-model-a")
    page.fill("#b", "ui-planted-model-e")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**b=ui-planted-model-e**")
    assert page.inner_text("#gate-verdict") == "regression"
    assert "[" in column(tab, "deltas", 6)[0]  # the paired delta with its CI
    assert page.locator("#flips tbody tr").count() == 25  # a page of the 50 right -> wrong flips
    page.select_option("#f-direction", "wrong_to_correct")
    page.click("#flip-filters button[type=submit]")
    page.wait_for_url("**direction=wrong_to_correct**")
    assert page.locator("#no-flips").count() == 1
    page.select_option("#f-direction", "correct_to_wrong")
    page.click("#flip-filters button[type=submit]")
    page.wait_for_url("**direction=correct_to_wrong**")
    first = column(tab, "flips", 1)
    page.click("nav.pager a[rel=next]")
    page.wait_for_url("**offset=25**")
    assert page.locator("#flips tbody tr").count() == 25 and column(tab, "flips", 1) != first
    page.fill("#f-text", "question 120 of")
    page.click("#flip-filters button[type=submit]")
    page.wait_for_url("**text=question**")
    assert column(tab, "flips", 1) == ["planted_qa #120"]
    assert column(tab, "flips", 4) == ["answer 120"] and column(tab, "flips", 6) == ["gold 120"]

    tab.go("/ui/compare?a=ui-ck-10&b=ui-ck-30")  # real outputs: example 0 learned (wrong -> right)
    rows = page.locator("#flips tbody tr")
    assert rows.count() >= 1
    assert "What is 2+2?" in page.inner_text("#flips")
    assert set(column(tab, "deltas", 1)) == {"tiny_mcq"}


def test_series_curves_heatmap_and_example_by_clicks(tab: Tab) -> None:
    tab.login()
    page = tab.page
    tab.go("/ui/series")
    page.click(f"#series-list a:text('{SERIES}')")
    page.wait_for_url(f"**/ui/series/{SERIES}")
    page.wait_for_selector(".chart canvas")  # uPlot drew the learning curve
    assert page.locator("#heatmap tbody tr").count() == 4  # tiny_mcq's 4 examples
    def verdicts(row: int) -> list[str]:
        cells = page.locator(f"#heatmap tbody tr:nth-child({row}) td")
        return [c.split()[-1] for c in cells.evaluate_all("els => els.map(e => e.className)")]

    assert verdicts(1) == ["wrong", "wrong", "right", "right"]  # example 0: learned at step 30 (a replica right)
    assert verdicts(4) == ["right", "right", "right", "wrong"]  # example 3: forgotten at step 40
    cells = page.locator("#heatmap tbody tr:first-child td")
    assert "late" in page.inner_text("#lists-h").lower()
    cells.nth(2).locator("a").click()
    page.wait_for_url("**example?dataset=tiny_mcq&index=0")
    assert "What is 2+2?" in page.inner_text("main")
    steps = column(tab, "history", 1)
    assert [s for i, s in enumerate(steps) if s not in steps[:i]] == ["10", "20", "30", "40"]
    assert "right" in column(tab, "history", 6)
    tab.shot("series-example-clicked")


def test_evaluation_failures_timeline_and_provenance(tab: Tab) -> None:
    tab.login()
    tab.go(f"/ui/evals/{FAILED}")
    page = tab.page
    assert page.inner_text("#status") == "partial"
    page.click("details summary")
    assert "CUDA out of memory" in page.inner_text(".failures")
    assert "bad_eval_ds" in page.inner_text(".failures")
    timeline = page.inner_text("#timeline")
    assert "run r1 finished" in timeline and "archived" in timeline
    assert page.inner_text("#archive") == "file:///archive/ui-failed/"
    assert page.locator("#cancel").count() == 0  # finished: nothing to cancel


def test_evaluation_live_status_and_cancel(tab: Tab, served: Served, browser_parts: dict[str, str]) -> None:
    tab.login()
    page = tab.page
    tab.go(f"/ui/evals/{RUNNING}")
    assert page.inner_text("#status") == "running"
    assert page.inner_text("#progress-text") == "1 of 2"
    critical = [v for v in axe_violations(tab, browser_parts["BUDEVAL_AXE"]) if v["impact"] == "critical"]
    assert not critical, critical
    tab.shot("evaluation-running")
    page.click("#cancel")
    page.wait_for_url("**cancel=cancel_requested")
    assert (RUNNING, names.CANCEL_EVENT, {"reason": names.CANCEL_REASON}) in served.workflows.raised
    finish_running(served.store, served.workflows)  # the workflow finishes after all: the page follows by polling
    wait_until(lambda: page.inner_text("#status") == "completed", "the polled status", timeout=30)
    page.wait_for_load_state("load")
    assert page.inner_text("#progress-text") == "2 of 2"
    assert page.locator("#cancel").count() == 0
