"""Fixtures of the browser tests: one real headless Chromium (Debian's, driven by Playwright) for the session, the
service's app with the UI over a real chDB store filled from real OpenCompass outputs (tests/ui/support.py), served
on real HTTP for the folder, and a fresh browser context (no cookies) per test that fails the test on any console
error or failed page load."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from budeval.config import Settings
from budeval.engine.catalog import load_suites
from budeval.events.publisher import MemoryPublisher
from budeval.service.app import ServiceDeps, create_app
from budeval.service.auth import Auth
from budeval.storage.clickhouse import ClickHouseStore
from budeval.storage.factory import open_store
from tests.service.support import StandInBackend, StandInWorkflows, serve_app
from tests.ui.support import fill

REPO = Path(__file__).resolve().parents[2]
TOKEN = "ui-test-token-0123456789abcdef"
#: Chromium's flags here: no sandbox (root in a VM), no GPU, nothing that reaches the network on its own.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@dataclass
class Served:
    url: str
    store: ClickHouseStore
    workflows: StandInWorkflows


@pytest.fixture(scope="session")
def browser_parts() -> dict[str, str]:
    """scripts/setup_browser.sh: Debian's chromium installed when missing, axe-core fetched (pinned, sha512)."""
    done = subprocess.run(["bash", str(REPO / "scripts" / "setup_browser.sh")], capture_output=True, text=True,
                          check=False, timeout=1200)
    if done.returncode != 0:
        pytest.fail(f"scripts/setup_browser.sh failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


@pytest.fixture(scope="session")
def browser(browser_parts: dict[str, str]) -> Iterator[Any]:
    """One Chromium for the whole session. Playwright's ``launch`` gives it a new, empty user-data dir of its own
    (removed at close), which is why ``--user-data-dir`` is not among the flags."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_parts["BUDEVAL_CHROMIUM"], headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The service app (real routes, auth and UI) over a filled chDB store, on a free loopback port."""
    data = tmp_path_factory.mktemp("ui-store")
    store = open_store(f"chdb://{data / 'ch'}")
    store.migrate()
    workflows = StandInWorkflows()
    fill(store, workflows)
    app = create_app(ServiceDeps(
        settings=Settings(data_dir=data, models_root=[Path("/models")]), workflows=workflows, store=store,
        backend=StandInBackend(), publisher=MemoryPublisher(), suites=load_suites(), auth=Auth(api_token=TOKEN),
    ))
    try:
        with serve_app(app) as url:
            yield Served(url, store, workflows)
    finally:
        store.close()


@dataclass
class Tab:
    """A page in a fresh context, the console errors and failed requests it saw, and where to save screenshots."""

    page: Any
    url: str
    shots: Path
    errors: list[str] = field(default_factory=list)

    def go(self, path: str) -> Any:
        answer = self.page.goto(self.url + path)
        assert answer is not None and answer.ok, f"{path}: HTTP {answer.status if answer else '-'}"
        return answer

    def login(self, token: str = TOKEN) -> None:
        self.go("/ui/login")
        self.page.fill("#token", token)
        self.page.click("button[type=submit]")
        self.page.wait_for_url("**/ui/leaderboard")

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def tab(browser: Any, served: Served, tmp_path: Path) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    found = Tab(page, served.url, tmp_path)
    page.on("console", lambda m: found.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: found.errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: found.errors.append(f"request failed: {r.url} {r.failure}"))
    try:
        yield found
    finally:
        context.close()
    assert not found.errors, found.errors
