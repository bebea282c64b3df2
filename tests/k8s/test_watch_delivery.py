"""The watcher's reports against the real apiserver: a slow ``on_finished`` (the service raises the workflow event
through its sidecar) must not hold the report of another run that finished at the same time."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from budeval.backends.base import RunState
from budeval.backends.kubernetes import KubernetesBackend
from tests.k8s.helpers import Reports, wait_until
from tests.k8s.kubelet import Behaviour, FakeKubelet
from tests.k8s.specs import hf_spec

pytestmark = pytest.mark.k8s


def test_a_slow_report_does_not_hold_the_report_of_the_next_run(
    backend: KubernetesBackend, kubelet_factory: Callable[..., FakeKubelet]
) -> None:
    kubelet = kubelet_factory(lambda pod: Behaviour("hang"))
    reports = Reports()
    release = threading.Event()
    lock = threading.Lock()
    held: list[str] = []

    def on_finished(state: RunState) -> None:
        reports(state)
        with lock:
            first = not held
            held.append(state.run_id)
        if first:  # the first delivery hangs (a busy sidecar) until the test lets it go
            release.wait(300)

    watch = backend.watch(on_finished)
    try:
        backend.submit(hf_spec("eval-slow", "r0"))
        backend.submit(hf_spec("eval-slow", "r1"))
        wait_until(lambda: len(kubelet.hanging()) == 2, "two running pods")
        kubelet.release(Behaviour("succeed"), lambda pod: True)  # both Jobs complete together
        # Before the fix the second report waited on the Jobs stream's thread until the first callback returned.
        states = [reports.wait("r0", timeout=90), reports.wait("r1", timeout=90)]
        assert not release.is_set()
    finally:
        release.set()
        watch.stop()
    assert [s.phase for s in states] == ["succeeded", "succeeded"]
    assert sorted(held) == ["r0", "r1"]
