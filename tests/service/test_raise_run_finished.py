"""The watcher's callback retries a sidecar briefly away and gives up at once on an instance that is gone (the
retry logic alone, against a real gRPC server of the embedded sidecar for the "gone" case)."""

from __future__ import annotations

from typing import Any

import dapr.ext.workflow as wf
import grpc

from budeval.backends.base import RunState
from budeval.service.runtime import raise_run_finished
from budeval.sidecar import EmbeddedSidecar

STATE = RunState(eval_id="e1", run_id="r0", phase="succeeded")


class Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


class FlakyClient:
    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def raise_workflow_event(self, instance: str, name: str, data: Any = None) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise Unavailable()


def test_a_sidecar_briefly_away_is_retried() -> None:
    client = FlakyClient(failures=2)
    assert raise_run_finished(client, STATE, retry_s=(0.0, 0.0, 0.0))
    assert client.calls == 3
    gone = FlakyClient(failures=10)
    assert not raise_run_finished(gone, STATE, retry_s=(0.0, 0.0))
    assert gone.calls == 3


def test_an_instance_that_is_gone_is_not_retried(tmp_path: Any) -> None:
    with EmbeddedSidecar(tmp_path / "s.db") as sidecar:
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
        assert not raise_run_finished(client, STATE, retry_s=(30.0,))  # NOT_FOUND: no 30 s wait
