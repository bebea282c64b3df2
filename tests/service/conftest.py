"""Fixtures of the service tests: the app with stand-in workflow engine, store and backend, served over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from budeval.config import Settings
from budeval.engine.catalog import load_suites
from budeval.events.publisher import MemoryPublisher
from budeval.service.app import ServiceDeps, create_app
from budeval.service.auth import Auth
from budeval.service.metrics import CountingPublisher, Metrics
from tests.service.support import StandInBackend, StandInStore, StandInWorkflows, serve_app

API_TOKEN = "test-api-token-0123456789"
APP_TOKEN = "test-dapr-app-token"


@dataclass
class Harness:
    url: str
    settings: Settings
    workflows: StandInWorkflows
    store: StandInStore
    backend: StandInBackend
    publisher: MemoryPublisher
    metrics: Metrics

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {API_TOKEN}"}

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = []
        for topic, event in list(self.publisher.events):
            assert topic == self.settings.events_topic
            if kind is None or event.type.endswith("." + kind):
                out.append(event.model_dump(mode="json"))
        return out


def _harness(tmp_path_factory: pytest.TempPathFactory, app_token: str | None) -> Iterator[Harness]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("svc"), models_root=[Path("/models")])
    workflows, store, backend, publisher, metrics = (
        StandInWorkflows(), StandInStore(), StandInBackend(), MemoryPublisher(), Metrics()
    )
    app = create_app(
        ServiceDeps(
            settings=settings,
            workflows=workflows,
            store=store,
            backend=backend,
            publisher=CountingPublisher(publisher, metrics),
            suites=load_suites(),
            auth=Auth(api_token=API_TOKEN, app_token=app_token),
            metrics=metrics,
        )
    )
    with serve_app(app) as url:
        yield Harness(url, settings, workflows, store, backend, publisher, metrics)


@pytest.fixture
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    yield from _harness(tmp_path_factory, app_token=None)


@pytest.fixture
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """The app with Dapr's app API token configured (as with ``dapr.io/app-token-secret``)."""
    yield from _harness(tmp_path_factory, app_token=APP_TOKEN)
