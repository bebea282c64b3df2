"""An embedded Dapr-compatible sidecar: workflow gRPC API, pub/sub and HTTP API backed by SQLite (no daprd needed).

The package itself imports nothing heavy (``EmbeddedSidecar`` is loaded on first use): ``python -m budeval.sidecar``
must install its signal handlers before the seconds of gRPC/Dapr imports, see :mod:`budeval.sidecar.__main__`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from budeval.sidecar.embedded import EmbeddedSidecar

__all__ = ["EmbeddedSidecar"]


def __getattr__(name: str) -> Any:
    if name == "EmbeddedSidecar":
        from budeval.sidecar.embedded import EmbeddedSidecar

        return EmbeddedSidecar
    raise AttributeError(f"module 'budeval.sidecar' has no attribute {name!r}")
