"""Request text that OpenCompass's config loader would rewrite: mmengine's ``Config.fromfile`` (how OpenCompass
reads the rendered config *and* the per-task copies it dumps and reads again) replaces ``{{$VAR:default}}`` in the
config text by the environment variable ``VAR`` -- the run's ``OPENAI_API_KEY`` -- and logs its value;
``{{ fileDirname }}`` and ``{{_base_.x}}`` are rewritten too (mmengine/config/config.py). A judge template, a
base_url or a path holding one of these sent the run's API key to the judge (or any endpoint) and into the log.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from budeval.schemas.request import EvalRequest
from budeval.service.intake import Rejection, parse_request

OPENCOMPASS_PYTHON = Path.home() / ".cache/budeval/opencompass-venv/bin/python"

BASE: dict[str, object] = {
    "eval_id": "e1",
    "model": {"name": "m", "source": {"type": "openai", "base_url": "http://10.0.0.5:8000/v1", "model": "m"}},
    "datasets": [{"name": "qa", "path": "/data/qa.jsonl", "kind": "qa", "scoring": "judge"}],
    "judge": {"model": {"name": "j", "source": {"type": "openai", "base_url": "http://10.0.0.6:8000/v1",
                                                "model": "j"}}},
}

SUBSTITUTED = [
    "{{$OPENAI_API_KEY:x}}",
    "{{ $OPENAI_API_KEY : }}",
    "{{'$HOME:x'}}",
    "{{ fileDirname }}",
    "{{fileBasename}}",
    "{{ _base_.models }}",
]


def with_value(where: str, value: str) -> dict[str, object]:
    doc = json.loads(json.dumps(BASE))
    if where == "template":
        doc["judge"]["template"] = f"Q {{question}} A {{answer}} P {{prediction}} {value}"
    elif where == "judge_url":
        doc["judge"]["model"]["source"]["base_url"] = f"http://10.0.0.6:8000/{value}/v1"
    elif where == "served_model":
        doc["model"]["source"]["model"] = f"m{value}"
    elif where == "dataset_path":
        doc["datasets"][0]["path"] = f"/data/{value}.jsonl"
    elif where == "regex":
        doc["datasets"][0]["scoring"] = f"regex:(\\w+){value}"
    return doc


@pytest.mark.parametrize("value", SUBSTITUTED)
@pytest.mark.parametrize("where", ["template", "judge_url", "served_model", "dataset_path", "regex"])
def test_config_substitution_patterns_are_refused(where: str, value: str) -> None:
    if where == "judge_url" and " " in value:  # a URL with spaces is refused by its own pattern
        with pytest.raises(ValidationError):
            EvalRequest.model_validate(with_value(where, value))
        return
    with pytest.raises(ValidationError, match="mmengine"):
        EvalRequest.model_validate(with_value(where, value))
    rejected = parse_request(json.dumps(with_value(where, value)))
    assert isinstance(rejected, Rejection) and "environment variable" in rejected.reason


@pytest.mark.parametrize("text", ["{{verdict}}", '{"verdict": "A"}', "{{", "$HOME", "{ $X: y }", "{{x}}: $y"])
def test_other_braces_stay_allowed(text: str) -> None:
    EvalRequest.model_validate(with_value("template", text))


@pytest.mark.skipif(not OPENCOMPASS_PYTHON.exists(), reason="OpenCompass venv not built")
def test_refused_patterns_are_the_ones_mmengine_rewrites(tmp_path: Path) -> None:
    """The real mmengine of the OpenCompass venv rewrites each refused pattern and leaves the allowed ones."""
    config = tmp_path / "cfg.py"
    allowed = ["{{verdict}}", "{{x}}: $y", "{ $X: y }"]
    values = [*SUBSTITUTED, *allowed]
    config.write_text("".join(f"v{i} = {v!r}\n" for i, v in enumerate(values)), encoding="utf-8")
    script = (
        "import json, sys; from mmengine.config import Config\n"
        "c = Config.fromfile(sys.argv[1], format_python_code=False)\n"
        f"print(json.dumps([c.get('v%d' % i) for i in range({len(values)})]))\n"
    )
    env = {**os.environ, "OPENAI_API_KEY": "sk-probe", "HOME": "/probe-home"}
    out = subprocess.run([str(OPENCOMPASS_PYTHON), "-c", script, str(config)], capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    if out.returncode != 0:  # a base-variable reference without a base config fails the load: also a rewrite
        assert "_base_" in out.stderr, out.stderr[-2000:]
        values = [v for v in values if "_base_" not in v]
        config.write_text("".join(f"v{i} = {v!r}\n" for i, v in enumerate(values)), encoding="utf-8")
        script = script.replace(f"range({len(values) + 1})", f"range({len(values)})")
        out = subprocess.run([str(OPENCOMPASS_PYTHON), "-c", script, str(config)], capture_output=True, text=True,
                             env=env, timeout=120, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    for value, got in zip(values, loaded, strict=True):
        assert (got != value) == (value not in allowed), (value, got)


def test_replayed_predictions_reach_the_config_without_a_pattern_mmengine_rewrites() -> None:
    """A re-judging run writes the stored prompts and predictions (data: the evaluated model's answers, a dataset's
    questions) into the config; one holding ``{{$OPENAI_API_KEY:x}}`` had the judge's key put in its place by the
    task process (and sent to the judge, and stored as the re-judged evaluation's prediction). They are written
    encoded (base64 of JSON), so no stored text reaches mmengine's text substitution."""
    from budeval.engine.render import render_config
    from budeval.schemas.request import CONFIG_SUBSTITUTION

    doc = json.loads(json.dumps(BASE))
    doc["rejudge_of"] = "e0"
    request = EvalRequest.model_validate(doc)
    leak = "{{$OPENAI_API_KEY:x}}"
    text = render_config(request, request.datasets or [], replay={f"HUMAN: {leak}?": [leak, "{{ fileDirname }}"]})
    assert CONFIG_SUBSTITUTION.search(text) is None, CONFIG_SUBSTITUTION.search(text)
