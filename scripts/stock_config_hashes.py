"""Write budeval/engine/stock_configs.json: the config hash OpenCompass computes for every stock dataset budeval knows.

The identity of an evaluation (budeval/engine/identity.py) names a stock dataset by the hash OpenCompass itself
gives its config (``opencompass.utils.prompt.get_prompt_hash``, whose first 6 characters are the ``version`` column
of OpenCompass's summary) and by its data files. ``judge`` says whether the config's evaluator takes a judge model
(a ``judge_cfg`` in its ``eval_cfg``, e.g. ``GenericLLMEvaluator``): budeval/engine/catalog.py ``needs_judge``.
The service does not have OpenCompass installed (it lives in its own venv locally and in the runner image in a
cluster), so the hashes are computed here, once per OpenCompass version, in the OpenCompass venv, and shipped with
the package.

    .venv/bin/python scripts/stock_config_hashes.py [--python OC_PYTHON] [--check]

``--check`` exits 1 when the shipped file differs from what the installed OpenCompass computes
(tests/engine/test_catalog.py runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from budeval.engine.catalog import STOCK, STOCK_TABLE  # noqa: E402

# Runs inside the OpenCompass venv: reads [[name, module, variable], ...] on stdin, prints the table as JSON.
_HELPER = r"""
import copy, json, os, sys, tempfile
import opencompass
from mmengine.config import Config
from opencompass.utils.abbr import dataset_abbr_from_cfg
from opencompass.utils.datasets_info import DATASETS_MAPPING
from opencompass.utils.prompt import get_prompt_hash

def judged(value):
    # An evaluator with a ``judge_cfg`` anywhere in a dataset's eval_cfg (GenericLLMEvaluator, also nested in a
    # CascadeEvaluator's llm_evaluator): the dataset is scored by a judge model the user must supply.
    if isinstance(value, dict):
        return "judge_cfg" in value or any(judged(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(judged(v) for v in value)
    return False

out = {}
with tempfile.TemporaryDirectory() as folder:
    for name, module, variable in json.load(sys.stdin):
        path = os.path.join(folder, name + ".py")
        with open(path, "w") as f:
            f.write("from mmengine.config import read_base\nwith read_base():\n")
            f.write(f"    from {module} import {variable} as cfgs\n")
        cfgs = list(Config.fromfile(path)["cfgs"])
        paths = set()
        for c in cfgs:
            p = c.get("path")
            if isinstance(p, str):
                local = DATASETS_MAPPING.get(p, {}).get("local") or p
                paths.add(os.path.normpath(local))
        out[name] = {
            "config_hash": get_prompt_hash(copy.deepcopy(cfgs)),
            "abbrs": {dataset_abbr_from_cfg(c): get_prompt_hash(copy.deepcopy(c)) for c in cfgs},
            "data_paths": sorted(paths),
            "judge": any(judged(c.get("eval_cfg", {})) for c in cfgs),
        }
print(json.dumps({"engine_version": opencompass.__version__, "datasets": out}, sort_keys=True))
"""


def compute(python: str) -> dict[str, object]:
    stock = [[s.name, s.module, s.variable] for s in sorted(STOCK.values(), key=lambda s: s.name)]
    done = subprocess.run(
        [python, "-c", _HELPER], input=json.dumps(stock), capture_output=True, text=True, check=False, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"stock_config_hashes: OpenCompass helper failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = os.environ.get("BUDEVAL_OPENCOMPASS_PYTHON") or str(
        Path(os.environ.get("BUDEVAL_CACHE") or Path.home() / ".cache" / "budeval") / "opencompass-venv/bin/python"
    )
    parser.add_argument("--python", default=default, help="the OpenCompass venv's interpreter")
    parser.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    args = parser.parse_args()
    table = compute(args.python)
    text = json.dumps(table, indent=1, sort_keys=True) + "\n"
    if args.check:
        shipped = json.loads(STOCK_TABLE.read_text(encoding="utf-8"))
        if shipped != table:
            print(f"{STOCK_TABLE} is out of date: run scripts/stock_config_hashes.py", file=sys.stderr)
            return 1
        print("stock config hashes match")
        return 0
    STOCK_TABLE.write_text(text, encoding="utf-8")
    print(f"wrote {STOCK_TABLE} ({len(table['datasets'])} datasets, OpenCompass {table['engine_version']})")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
