"""manifests/: the plain-YAML install is exactly what the chart renders, holds no secret and validates."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from tests.deploy.helm import MANIFESTS
from tests.deploy.render import render
from tests.deploy.test_chart import K8S_VERSIONS, validate_doc


def test_manifests_match_the_chart() -> None:
    for name, text in render().items():
        committed = (MANIFESTS / name).read_text(encoding="utf-8")
        assert committed == text, f"manifests/{name} is stale: run `.venv/bin/python -m tests.deploy.render`"


def test_plain_manifests_hold_no_secret_and_no_hook() -> None:
    docs = [
        d
        for f in sorted(MANIFESTS.glob("*.yaml"))
        if f.name != "values.yaml"
        for d in yaml.safe_load_all(f.read_text())
        if d
    ]
    kinds = [d["kind"] for d in docs]
    assert "Secret" not in kinds, "the user creates Secrets; the plain manifests only reference them"
    assert {"Deployment", "Service", "Role", "RoleBinding", "PersistentVolumeClaim", "Component", "Job"} <= set(kinds)
    for d in docs:
        assert not any(k.startswith("helm.sh/hook") for k in (d["metadata"].get("annotations") or {}))
        assert d["metadata"]["namespace"] == "budeval"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_plain_manifests_validate(version: str) -> None:
    for f in sorted(MANIFESTS.glob("*.yaml")):
        if f.name == "values.yaml":
            continue
        for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            if doc:
                try:
                    validate_doc(doc, version)
                except kubernetes_validate.ValidationError as exc:
                    pytest.fail(f"{f.name}: {doc['kind']}/{doc['metadata']['name']}: {exc}")
