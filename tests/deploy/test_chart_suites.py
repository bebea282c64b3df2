"""The chart's ``suites`` values: a ConfigMap of suite files mounted into the service, read by the real catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from budeval.config import Settings
from budeval.engine.catalog import read_suites, suite_folders
from tests.deploy.helm import HelmError, find, one, template

VALUES = {
    "suites": {
        "reasoning": {"description": "maths and reasoning", "datasets": ["gsm8k_gen", "math_gen", "bbh_gen"]},
        "light": {"datasets": ["tiny_qa"]},  # replaces the bundled light
    }
}


def _values(tmp_path: Path, values: object) -> Path:
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    return file


def test_suites_values_become_files_the_service_reads(tmp_path: Path) -> None:
    docs = template([_values(tmp_path, VALUES)])
    config_map = one(docs, "ConfigMap", "budeval-suites")
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = next(c for c in spec["containers"] if c["name"] == "budeval")
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "suites")
    assert mount["readOnly"] is True and "subPath" not in mount  # a subPath mount would never be updated
    volume = next(v for v in spec["volumes"] if v["name"] == "suites")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    settings = Settings.from_env({"BUDEVAL_SUITES_PATH": env["BUDEVAL_SUITES_PATH"]})
    assert settings.suites_path == [Path(mount["mountPath"])]
    # What the kubelet would put in the mounted folder, read by the service's own catalog.
    folder = tmp_path / "mounted"
    folder.mkdir()
    for name, text in config_map["data"].items():
        (folder / name).write_text(text)
    suites = read_suites(suite_folders([folder]))
    assert suites["reasoning"].datasets == ["gsm8k_gen", "math_gen", "bbh_gen"]
    assert suites["reasoning"].description == "maths and reasoning"
    assert suites["light"].datasets == ["tiny_qa"] and "heavy" in suites


def test_no_suites_values_no_config_map() -> None:
    docs = template()
    assert not [d for d in find(docs, "ConfigMap") if d["metadata"]["name"].endswith("-suites")]
    container = next(c for c in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
                     if c["name"] == "budeval")
    assert "BUDEVAL_SUITES_PATH" not in {e["name"] for e in container["env"]}


@pytest.mark.parametrize(
    "suites",
    [{"Bad_Name": {"datasets": ["tiny_qa"]}}, {"x": {"datasets": []}}, {"x": {"datasets": ["a"], "extra": 1}}],
)
def test_schema_rejects_bad_suites(tmp_path: Path, suites: object) -> None:
    with pytest.raises(HelmError):
        template([_values(tmp_path, {"suites": suites})])
