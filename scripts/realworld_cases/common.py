"""Helpers to build real-world OpenCompass 0.5.4 cases with OpenCompass's own code.

Run with the OpenCompass venv python. Every results file is written by the real `OpenICLEvalTask`
(`opencompass/tasks/openicl_eval.py`, launched as its own process exactly like the LocalRunner does, stdout+stderr to
`logs/eval/{model}/{dataset}.out`), every summary by the real summarizer class. Predictions and infer logs are copied
from the real SmolLM2-135M runs in tests/fixtures/opencompass/. Absolute paths are rewritten at the end
(work dir -> /workspace/runs/<case>/..., repo -> /workspace, venv -> /opt/venv) like the fixtures' README says.
"""
import contextlib
import copy
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from mmengine.config import Config, ConfigDict

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / 'tests' / 'fixtures' / 'opencompass'
REPO_DS = str(REPO / 'budeval' / 'engine' / 'datasets')
#: Where the cases are written (BUDEVAL_CASES_OUT, default: the repo's fixtures folder).
OUT = Path(os.environ.get('BUDEVAL_CASES_OUT', str(REPO / 'tests' / 'fixtures' / 'realworld')))
TMP = Path(os.environ.get('BUDEVAL_CASES_TMP', '/tmp/budeval-realworld-cases'))
PY = sys.executable
import opencompass  # noqa: E402

OC = Path(opencompass.__file__).parent
VENV = str(Path(PY).parent.parent)

QA_RUN = FIX / 'qa_chat/20261123_081443'
MCQ_RUN = FIX / 'mcq/20261123_081520'
M = 'smollm2-135m-instruct'


def load_cfg(run: Path) -> Config:
    cfg_file = next((run / 'configs').glob('*.py'))
    text = cfg_file.read_text().replace('/workspace/budeval/engine/datasets', REPO_DS)
    return Config.fromstring(text, '.py')


def model_cfg() -> ConfigDict:
    return copy.deepcopy(load_cfg(QA_RUN)['models'][0])


def qa_ds() -> ConfigDict:
    return copy.deepcopy(load_cfg(QA_RUN)['datasets'][0])


def mcq_ds() -> ConfigDict:
    return copy.deepcopy(load_cfg(MCQ_RUN)['datasets'][0])


def new_case(name: str) -> Path:
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def run_dir(case: Path, ts: str, sub: str = 'run') -> Path:
    r = case / sub / ts
    for s in ('configs', 'logs/infer', 'logs/eval', 'predictions', 'results', 'summary'):
        (r / s).mkdir(parents=True, exist_ok=True)
    return r


def copy_pred(r: Path, src_run: Path, ds: str, dst_ds: str | None = None, model: str = M,
              keep: list[int] | None = None, gold_map=None) -> None:
    """Copy a real predictions file (optionally a subset re-keyed from 0, like a shard)."""
    dst_ds = dst_ds or ds
    src = src_run / 'predictions' / M / f'{ds}.json'
    data = json.loads(src.read_text())
    if keep is not None:
        data = {str(i): data[str(k)] for i, k in enumerate(keep)}
    if gold_map:
        for v in data.values():
            v['gold'] = gold_map(v['gold'])
    dst = r / 'predictions' / model / f'{dst_ds}.json'
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, 'w', encoding='utf-8') as f:  # icl_base_inferencer.py:102-104
        json.dump(data, f, indent=4, ensure_ascii=False)


def copy_infer_log(r: Path, src_run: Path, ds: str, dst_ds: str | None = None, model: str = M) -> None:
    dst = r / 'logs/infer' / model / f'{dst_ds or ds}.out'
    dst.parent.mkdir(parents=True, exist_ok=True)
    text = (src_run / 'logs/infer' / M / f'{ds}.out').read_text()
    dst.write_text(text.replace(f'/{ds}]', f'/{dst_ds or ds}]'))


def dump_config(r: Path, cfg: dict, ts: str, pid: int) -> Path:
    """configs/{ts}_{pid}.py as cli/main.py:323-325 writes it."""
    cfg = copy.deepcopy(cfg)
    cfg['work_dir'] = str(r)
    cfg = Config(cfg, format_python_code=False)
    p = r / 'configs' / f'{ts}_{pid}.py'
    cfg.dump(str(p))
    return p


def run_eval(r: Path, model: dict, ds: dict, dump_details: bool = True, env_extra: dict | None = None) -> int:
    """Launch tasks/openicl_eval.py in its own process, output to logs/eval/{m}/{d}.out (as LocalRunner)."""
    from opencompass.utils import dataset_abbr_from_cfg, model_abbr_from_cfg
    TMP.mkdir(parents=True, exist_ok=True)
    task_cfg = Config(dict(models=[model], datasets=[[ds]], work_dir=str(r),
                           eval=dict(runner=dict(task=dict(dump_details=dump_details)))))
    cfgp = TMP / f'task_{os.getpid()}_{abs(hash((str(r), dataset_abbr_from_cfg(ds))))}.py'
    task_cfg.dump(str(cfgp))
    log = r / 'logs/eval' / model_abbr_from_cfg(model) / f'{dataset_abbr_from_cfg(ds)}.out'
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(env_extra or {})
    with open(log, 'w') as f:
        rc = subprocess.call([PY, str(OC / 'tasks/openicl_eval.py'), str(cfgp)], stdout=f, stderr=subprocess.STDOUT,
                             cwd=str(TMP), env=env)
    return rc


def summarize(r: Path, cfg: dict, ts: str, cls=None, **kw) -> str:
    """Run a real summarizer in-process; returns what it printed (for .budeval/output.log)."""
    from opencompass.summarizers import DefaultSummarizer
    cls = cls or DefaultSummarizer
    c = Config(copy.deepcopy(cfg))
    c['work_dir'] = str(r)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        s = cls(config=c, **kw)
        s.summarize(time_str=ts)
    return buf.getvalue()


def budeval_files(case_run: Path, cfg: dict, output: str, exit_code: int = 0) -> None:
    """The local backend's .budeval/ folder (config it ran, console output, exit code)."""
    b = case_run / '.budeval'
    b.mkdir(parents=True, exist_ok=True)
    (b / 'exit_code').write_text(f'{exit_code}\n')
    (b / 'output.log').write_text(output)
    tmp = TMP / 'bcfg.py'
    Config(copy.deepcopy(cfg), format_python_code=False).dump(str(tmp))
    (b / 'config.py').write_text('# OpenCompass 0.5.4 config rendered by budeval; do not edit: budeval records the '
                                 'sha256 of this text.\n' + tmp.read_text())


def rewrite_paths(case: Path) -> None:
    """Absolute paths -> /workspace/... as the fixtures README describes (nothing else changes)."""
    name = case.name
    for d in sorted((d for d in case.rglob('*') if d.is_dir()), key=lambda d: -len(d.parts)):
        if not any(d.iterdir()):
            d.rmdir()   # run_dir() pre-creates folders OpenCompass would not have made
    for p in case.rglob('*'):
        if not p.is_file() or p.suffix in ('.png',):
            continue
        try:
            t = p.read_text(encoding='utf-8')
        except UnicodeDecodeError:
            continue
        n = t
        for sub in ('run_b', 'run'):
            n = n.replace(str(case / sub), f'/workspace/runs/{name}' + ('_b' if sub == 'run_b' else ''))
        n = n.replace(REPO_DS, '/workspace/budeval/engine/datasets')
        n = n.replace(str(case / 'data'), '/workspace/data')
        n = n.replace(str(TMP), '/tmp/oc-tasks')
        n = n.replace(str(Path.home() / '.cache/budeval/models'), '/workspace/models')
        n = n.replace(VENV, '/opt/venv')
        if n != t:
            p.write_text(n, encoding='utf-8')
