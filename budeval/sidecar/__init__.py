"""An embedded Dapr-compatible sidecar: workflow gRPC API, pub/sub and HTTP API backed by SQLite (no daprd needed)."""

from budeval.sidecar.embedded import EmbeddedSidecar

__all__ = ["EmbeddedSidecar"]
