"""Writes the OpenCompass configs behind tests/fixtures/opencompass (used by scripts/make_fixtures.sh).

Each config starts from what budeval itself renders (``budeval.engine.render.render_config``), so the fixtures show
the output of budeval's own configs; the failure cases then add one deliberate defect to that text:

- ``two_models_one_fails``: a second model whose folder does not exist (its infer task fails);
- ``two_datasets_one_fails``: a second dataset whose evaluator gets an unknown argument (its eval task fails);
- ``reuse_first``: ``tiny_qa`` whose evaluator gets an unknown argument; ``reuse`` then re-runs the same folder with
  the plain config and ``-r`` (inference is reused, evaluation runs again): the older summary has ``-``, the newer a
  score;
- ``aborted``: a dataset file with an invalid JSON line (the OpenCompass CLI aborts before any task).

Usage: opencompass_fixture_configs.py NAME OUT_FILE MODEL_DIR DATA_DIR   (runs with budeval importable)
"""

from __future__ import annotations

import sys
from pathlib import Path

from budeval.engine.render import render_config
from budeval.schemas.request import CustomDataset, EvalRequest

MODEL_NAME = "smollm2-135m-instruct"


def request(model_dir: str, datasets: list[str | dict[str, str]]) -> EvalRequest:
    return EvalRequest.model_validate(
        {
            "eval_id": "fixture",
            "model": {"name": MODEL_NAME, "source": {"type": "huggingface", "path": model_dir, "mode": "chat"}},
            "datasets": datasets,
            "generation": {"max_out_len": 32, "batch_size": 4},
            "resources": {"gpus": 0},
        }
    )


def config_for(name: str, model_dir: str, data_dir: str) -> str:
    if name == "reuse_first":
        return _break_last_evaluator(render_config(request(model_dir, ["tiny_qa"]), ["tiny_qa"]))
    if name in ("qa_chat", "reuse"):
        return render_config(request(model_dir, ["tiny_qa"]), ["tiny_qa"])
    if name == "mcq":
        return render_config(request(model_dir, ["tiny_mcq"]), ["tiny_mcq"])
    if name == "two_models_one_fails":
        text = render_config(request(model_dir, ["tiny_qa"]), ["tiny_qa"])
        broken = (
            "    dict(\n"
            "        type=HuggingFacewithChatTemplate,\n"
            "        abbr='missing-model',\n"
            f"        path={data_dir + '/no-such-model'!r},\n"
            "        model_kwargs=dict(trust_remote_code=False),\n"
            "        max_out_len=32,\n"
            "        max_seq_len=2048,\n"
            "        batch_size=4,\n"
            "        run_cfg=dict(num_gpus=0),\n"
            "    ),\n"
            "]\n\ndatasets = ["
        )
        return _replace_once(text, "]\n\ndatasets = [", broken)
    if name == "two_datasets_one_fails":
        bad = CustomDataset(name="bad_eval_ds", path=f"{data_dir}/bad_eval_ds.jsonl", kind="qa")
        req = request(model_dir, ["tiny_qa", bad.model_dump()])
        return _break_last_evaluator(render_config(req, ["tiny_qa", bad]))
    if name == "aborted":
        broken = CustomDataset(name="broken_ds", path=f"{data_dir}/broken_ds.jsonl", kind="qa")
        return render_config(request(model_dir, [broken.model_dump()]), [broken])
    raise SystemExit(f"unknown fixture {name!r}")


def _break_last_evaluator(text: str) -> str:
    """The last dataset's evaluator gets an unknown argument (its eval task fails; inference is unaffected)."""
    marker = "evaluator_kwargs=dict("
    if marker not in text:
        raise SystemExit(f"rendered config changed shape: no {marker!r}")
    head, _, tail = text.rpartition(marker)
    return f"{head}{marker}no_such_option=1, {tail}"


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise SystemExit(f"rendered config changed shape: {old!r} found {text.count(old)} times")
    return text.replace(old, new)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    fixture, out, model, data = sys.argv[1:]
    Path(out).write_text(config_for(fixture, model, data), encoding="utf-8")
