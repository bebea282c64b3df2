"""Which sidecar `budeval serve` uses: daprd when the environment names one, else the embedded one (own process)."""

from __future__ import annotations

import pytest

from budeval.config import Settings
from budeval.service.runtime import sidecar_mode


@pytest.mark.parametrize(
    ("setting", "environ", "platform", "expected"),
    [
        ("auto", {}, "linux", "process"),
        ("auto", {}, "darwin", "embedded"),
        ("auto", {"DAPR_GRPC_PORT": "50001"}, "linux", "external"),
        ("auto", {"DAPR_GRPC_ENDPOINT": "dns:///dapr:50001"}, "darwin", "external"),
        ("embedded", {"DAPR_GRPC_PORT": "50001"}, "linux", "embedded"),
        ("process", {}, "darwin", "process"),
        ("external", {}, "linux", "external"),
    ],
)
def test_sidecar_mode(setting: str, environ: dict[str, str], platform: str, expected: str) -> None:
    settings = Settings.from_env({**environ, "BUDEVAL_SIDECAR": setting})  # Dapr's own variable names are read
    assert sidecar_mode(settings, platform) == expected
