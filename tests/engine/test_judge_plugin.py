"""budeval's judge code as OpenCompass 0.5.4 runs it (the real venv, one child process): the verdict read from a
judge's raw answer, the ``dict_postprocessor`` GenericLLMEvaluator calls, and the replay model of ``budeval rejudge``
with prompts parsed by OpenCompass's own template parser (the one its API models use)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "budeval" / "engine" / "opencompass_plugin" / "budeval_scoring.py"
OPENCOMPASS_VENV = Path(os.environ.get("BUDEVAL_CACHE") or Path.home() / ".cache" / "budeval") / "opencompass-venv"
OC_PYTHON = OPENCOMPASS_VENV / "bin" / "python"

pytestmark = [pytest.mark.opencompass, pytest.mark.usefixtures("opencompass_env")]

#: raw judge answer -> verdict letter ("" unreadable).
VERDICTS = {
    "A": "A",
    "B": "B",
    "(A)": "A",
    "**B**": "B",
    "A. The answer is correct.": "A",
    "Answer: B": "B",  # the "A" of "Answer" is a word, not the verdict (OpenCompass's own parser reads it as A)
    "The answer is incorrect.": "B",
    "That is correct": "A",
    "Correct answer: 2 + 3 = 5": "",  # SmolLM2 echoing the prompt (seen in a real run): no verdict
    "I cannot tell.": "",
    "": "",
}

#: budeval's default judge prompt filled in (budeval/engine/judging.py): SmolLM2 echoes its prompt.
ECHO_PROMPT = (
    "You are grading an answer to a question against the correct answer.\nQuestion: Is A bigger than B?\n"
    "Correct answer: no\nAnswer to grade: yes\n"
    "Is the answer to grade correct? Reply with only the letter A (correct) or B (incorrect)."
)

_RUNNER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location('budeval_scoring', sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
cases = json.loads(sys.stdin.read())
out = {'verdicts': {raw: module.judge_verdict(raw) for raw in cases['verdicts']}}
output = {str(i): {'origin_prompt': 'p', 'prediction': raw, 'gold': 'g%d' % i} for i, raw in enumerate(cases['raw'])}
out['postprocess'] = module.budeval_judge_postprocess(output, '/nowhere.json')
from opencompass.openicl.icl_prompt_template import PromptTemplate
template = PromptTemplate(template=dict(round=[dict(role='HUMAN', prompt='{question}')]))
meta = dict(round=[dict(role='HUMAN', api_role='HUMAN'), dict(role='BOT', api_role='BOT', generate=True)])
replay = module.BudevalReplay(path='replay:e0', answers=cases['answers'], meta_template=meta)
item = lambda q: template.generate_item({'question': q})
out['replayed'] = replay.generate_from_template([item(q) for q in cases['asked']], max_out_len=8)
try:
    replay.generate_from_template([item('never stored')], max_out_len=8)
except ValueError as exc:
    out['missing'] = str(exc)
base = module.BudevalReplay(path='replay:e0', answers={'plain base prompt': ['x']})
out['base'] = base.generate(['plain base prompt'])
out['echo'] = [module.judge_verdict(raw, prompt) for raw, prompt in cases['echo']]
echoed = {str(i): {'origin_prompt': prompt, 'prediction': raw, 'gold': 'g'}
          for i, (raw, prompt) in enumerate(cases['echo'])}
out['echo_postprocess'] = module.budeval_judge_postprocess(echoed, '/nowhere.json')
import base64
encoded = base64.b64encode(json.dumps({'{{$OPENAI_API_KEY:x}}': ['{{ fileDirname }}']}).encode()).decode()
out['encoded'] = module.BudevalReplay(path='replay:e0', answers_b64=encoded).generate(['{{$OPENAI_API_KEY:x}}'])
print('RESULT' + json.dumps(out))
"""


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    cases = {
        "verdicts": list(VERDICTS),
        "raw": ["A", "B. Wrong.", "no idea"],
        "answers": {"HUMAN: Capital of France?": ["Paris", "Lyon"], "HUMAN: 2+3?": ["5"]},
        "asked": ["Capital of France?", "2+3?", "Capital of France?"],
        "echo": [[ECHO_PROMPT, ECHO_PROMPT], [ECHO_PROMPT + "\nB", ECHO_PROMPT],
                 ["HUMAN: " + ECHO_PROMPT.splitlines()[-1] + "\nA.", [{"role": "HUMAN", "prompt": ECHO_PROMPT}]]],
    }
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(OC_PYTHON), "-c", _RUNNER, str(PLUGIN)], input=json.dumps(cases), env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return dict(json.loads(line[len("RESULT"):]))


def test_the_verdict_is_read_from_the_judges_raw_answer(result: dict[str, Any]) -> None:
    assert result["verdicts"] == VERDICTS


def test_postprocess_keeps_each_verdict_and_raw_answer_in_example_order(result: dict[str, Any]) -> None:
    out = result["postprocess"]
    assert out["accuracy"] == pytest.approx(100 / 3) and out["judged"] == pytest.approx(200 / 3)
    assert [(d["correct"], d["judge_verdict"], d["judge_answer"], d["gold"]) for d in out["details"]] == [
        (True, "A", "A", "g0"),
        (False, "B", "B. Wrong.", "g1"),
        (False, "", "no idea", "g2"),
    ]


def test_replay_answers_from_the_stored_predictions_and_never_invents_one(result: dict[str, Any]) -> None:
    assert result["replayed"] == ["Paris", "5", "Lyon"]  # a prompt asked twice gets its predictions in turn
    assert "no stored prediction to replay" in result["missing"] and "never stored" in result["missing"]
    assert result["base"] == ["x"]
    assert result["encoded"] == ["{{ fileDirname }}"]  # the form rendered configs use (render.py ``_replay_model``)


def test_a_judge_echoing_its_prompt_gives_no_verdict(result: dict[str, Any]) -> None:
    """A small judge echoing its prompt ("... the letter A (correct) or B (incorrect).", or a question mentioning
    "A") was read as verdict A: counted correct, inflating accuracy. Lines of the judge's own prompt are no verdict;
    what it adds after them is read."""
    assert result["echo"] == ["", "B", "A"]
    out = result["echo_postprocess"]
    assert [d["judge_verdict"] for d in out["details"]] == ["", "B", "A"]
