"""Regenerates manifests/ (the plain-YAML install) from the chart: ``.venv/bin/python -m tests.deploy.render``.

tests/deploy/test_manifests.py checks that the committed files equal this output, so they never drift from the chart.
"""

from __future__ import annotations

import sys

import yaml

from tests.deploy.helm import MANIFESTS, Doc, is_hook, load_docs, template_text

#: Values for the plain manifests: every credential from a Secret the user creates (see manifests/README.md), so the
#: files hold no secret and no generated token.
VALUES = MANIFESTS / "values.yaml"

HEADER = (
    "# Generated from charts/budeval by `.venv/bin/python -m tests.deploy.render` with manifests/values.yaml;\n"
    "# do not edit by hand (tests/deploy/test_manifests.py checks that it matches the chart).\n"
)


def _dump(docs: list[Doc]) -> str:
    return HEADER + "".join("---\n" + yaml.safe_dump(d, sort_keys=False) for d in docs)


def _unhooked(doc: Doc) -> Doc:
    """The hook Job as a plain object: without Helm, it is applied (and re-created on upgrade) by the user."""
    annotations = doc["metadata"].get("annotations") or {}
    kept = {k: v for k, v in annotations.items() if not k.startswith("helm.sh/hook")}
    doc["metadata"]["annotations"] = kept
    if not kept:
        del doc["metadata"]["annotations"]
    return doc


def render() -> dict[str, str]:
    """File name -> content of every file under manifests/ that comes from the chart."""
    docs = load_docs(template_text([VALUES]))
    hooks = [_unhooked(d) for d in docs if is_hook(d)]
    dapr = [d for d in docs if not is_hook(d) and d["apiVersion"].startswith("dapr.io/")]
    core = [d for d in docs if not is_hook(d) and not d["apiVersion"].startswith("dapr.io/")]
    return {"budeval.yaml": _dump(core), "dapr-components.yaml": _dump(dapr), "migrate-job.yaml": _dump(hooks)}


def main() -> int:
    for name, text in render().items():
        (MANIFESTS / name).write_text(text, encoding="utf-8")
        print(f"wrote manifests/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
