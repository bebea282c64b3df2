"""Publishing events: through Dapr's pub/sub (daprd in a cluster, the embedded sidecar locally) or in memory."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from budeval.errors import TransientError
from budeval.events.cloudevents import CloudEvent, to_json


class EventPublisher(Protocol):
    def publish(self, topic: str, event: CloudEvent) -> None: ...


class DaprPublisher:
    """``DaprClient.publish_event`` with the CloudEvent passed through as-is (its id is kept for dedupe)."""

    def __init__(self, pubsub_name: str) -> None:
        self.pubsub_name = pubsub_name
        self._client: Any = None
        self._lock = threading.Lock()

    def _dapr(self) -> Any:
        with self._lock:
            if self._client is None:
                from dapr.clients import DaprClient  # imported late: connecting waits for the sidecar's health

                self._client = DaprClient()
            return self._client

    def publish(self, topic: str, event: CloudEvent) -> None:
        try:
            self._dapr().publish_event(
                pubsub_name=self.pubsub_name,
                topic_name=topic,
                data=to_json(event),
                data_content_type="application/cloudevents+json",
            )
        except Exception as exc:  # grpc errors and connection failures: the activity retries
            raise TransientError(f"publish to {self.pubsub_name}/{topic} failed: {type(exc).__name__}") from exc

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class MemoryPublisher:
    """Keeps events in a list; for unit tests and benchmarks that have no broker."""

    def __init__(self) -> None:
        self.events: list[tuple[str, CloudEvent]] = []
        self._lock = threading.Lock()

    def publish(self, topic: str, event: CloudEvent) -> None:
        with self._lock:
            self.events.append((topic, event))
