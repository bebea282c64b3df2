"""The Dockerfiles, statically (no Docker engine here): base, non-root user, entry points, pins, build context.

What is proven: each Dockerfile parses into instructions, runs as uid 1000 (the chart's and the Kubernetes backend's
user), the service image's package builds as a wheel with its data files and entry point, the runner's pins equal
scripts/setup_opencompass.sh's. What is not: that `docker build` succeeds (no engine on these machines).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from budeval.backends.kubernetes.manifests import RUNNER_UID
from budeval.config import Settings
from tests.deploy.helm import CHART, REPO

DOCKER = REPO / "docker"
SERVICE = DOCKER / "Dockerfile.service"
RUNNER = DOCKER / "Dockerfile.runner"

Instruction = tuple[str, str]


def instructions(path: Path) -> list[Instruction]:
    """(KEYWORD, arguments) of each instruction, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        assert keyword.isupper(), f"{path.name}: cannot parse {full!r}"
        out.append((keyword, args.strip()))
    assert not pending, f"{path.name}: ends inside a continued line"
    return out


def final_stage(ins: list[Instruction]) -> list[Instruction]:
    starts = [i for i, (k, _) in enumerate(ins) if k == "FROM"]
    return ins[starts[-1] :]


@pytest.mark.parametrize("path", [SERVICE, RUNNER], ids=["service", "runner"])
def test_slim_base_and_non_root_user(path: Path) -> None:
    stage = final_stage(instructions(path))
    assert stage[0] == ("FROM", "python:3.11-slim")
    users = [a for k, a in stage if k == "USER"]
    assert users, "the final stage sets a USER"
    assert users[-1] == f"{RUNNER_UID}:{RUNNER_UID}", "numeric uid:gid, so runAsNonRoot can verify it"
    # Nothing after USER runs as root again, and no instruction switches to root.
    assert all(not re.match(r"^(root|0)(:|$)", u) for u in users)
    allowed = {"FROM", "RUN", "COPY", "ENV", "ARG", "USER", "WORKDIR", "EXPOSE", "ENTRYPOINT", "CMD", "LABEL"}
    assert {k for k, _ in instructions(path)} <= allowed
    for keyword, args in instructions(path):
        if keyword == "RUN" and "pip install" in args:
            assert "--no-cache-dir" in args or "PIP_NO_CACHE_DIR=1" in path.read_text(), args


def test_uids_match_the_chart() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["securityContext"]["runAsUser"] == RUNNER_UID
    assert values["securityContext"]["fsGroup"] == RUNNER_UID


def test_service_image_runs_budeval() -> None:
    stage = final_stage(instructions(SERVICE))
    assert ("ENTRYPOINT", '["budeval"]') in stage and ("CMD", '["serve"]') in stage
    assert ("EXPOSE", "8080") in stage
    env = " ".join(a for k, a in stage if k == "ENV")
    assert "BUDEVAL_SUITES_DIR=/opt/budeval/share/workflows" in env
    copies = [
        src for k, a in instructions(SERVICE) if k == "COPY" and not a.startswith("--from") for src in a.split()[:-1]
    ]
    assert {"pyproject.toml", "setup.py", "README.md", "budeval", "workflows"} <= set(copies)
    for source in copies:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    lines = (DOCKER / "Dockerfile.service.dockerignore").read_text(encoding="utf-8").splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"
    for source in copies:
        assert f"!{source.rstrip('/')}" in ignore or f"!{source.rstrip('/')}/" in ignore, f"{source} is ignored"


def test_service_package_builds_with_data_and_entry_point(tmp_path: Path) -> None:
    """The `pip install .` of Dockerfile.service: an isolated wheel build (setuptools fetched by pip)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "BUDEVAL_COMMIT": "c0ffee1234"},  # what the image's build argument passes
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = tmp_path.glob("budeval-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        assert "budeval = budeval.cli.main:main" in z.read(entry).decode()
    assert "budeval/py.typed" in names and "budeval/cli/main.py" in names
    assert any(n.startswith("budeval/engine/datasets/") for n in names), "package data is installed"
    assert "budeval/engine/stock_configs.json" in names, "the stock datasets' identities are installed"
    with zipfile.ZipFile(wheel) as z:
        stamp = json.loads(z.read("budeval/build_info.json"))
    assert stamp["commit"] == "c0ffee1234" and stamp["version"] == "0.1.0" and stamp["built_at"]


def _setup_pins() -> set[str]:
    text = (REPO / "scripts" / "setup_opencompass.sh").read_text(encoding="utf-8")
    block = re.search(r"^PINS=\((.*?)^\)", text, re.S | re.M)
    assert block, "PINS=( ... ) in scripts/setup_opencompass.sh"
    return set(re.findall(r'"([^"]+)"', block.group(1)))


def test_runner_pins_match_the_local_opencompass_setup() -> None:
    run = " ".join(a for k, a in instructions(RUNNER) if k == "RUN")
    quoted = set(shlex.split(run))
    assert "opencompass==0.5.4" in quoted
    assert {"pyarrow==21.0.0", "transformers<5", "sentence-transformers<5.2", "gradio-client<1.14"} <= quoted
    assert _setup_pins() - {"gguf==0.19.0"} <= quoted, "gguf only converts the local test model"
    args = dict(a.split("=", 1) for k, a in instructions(RUNNER) if k == "ARG" and "=" in a)
    assert args["TORCH_SPEC"] == "torch==2.13.0"
    # torch goes in first, alone, so that opencompass's resolve never swaps it for another build.
    assert run.index('"$TORCH_SPEC"') < run.index('"opencompass==0.5.4"')
    assert "--index-url" in run, "the CPU variant's index (build-arg TORCH_INDEX_URL)"


def test_runner_image_matches_the_engine_version() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["runner"]["image"]["tag"] == Settings().engine_version == "0.5.4"
    cmd = json.loads(next(a for k, a in instructions(RUNNER) if k == "CMD"))
    assert cmd[:3] == ["python", "-m", "opencompass.cli.main"], "the module the Kubernetes backend runs"
