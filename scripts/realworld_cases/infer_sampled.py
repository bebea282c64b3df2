"""Real sampled n=2 inference of tiny_mcq (do_sample, temperature 1.0) via tasks/openicl_infer.py; output to /tmp, then copied to src/."""
import sys, copy, subprocess
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import *
from mmengine.config import Config
r = TMP / 'infer_try' / '20261201_123000'
(r / 'predictions').mkdir(parents=True, exist_ok=True)
m = model_cfg()
m['path'] = m['tokenizer_path'] = str(Path.home() / '.cache/budeval/models/SmolLM2-135M-Instruct')
m['generation_kwargs'] = dict(do_sample=True, temperature=1.0, top_p=0.95)
ds = mcq_ds(); ds['n'] = 2
cfg = Config(dict(models=[m], datasets=[[ds]], work_dir=str(r)))
cfg.dump(str(TMP / 'infer_task.py'))
(r / 'logs/infer' / M).mkdir(parents=True, exist_ok=True)
with open(r / 'logs/infer' / M / 'tiny_mcq.out', 'w') as f:
    rc = subprocess.call([PY, str(OC / 'tasks/openicl_infer.py'), str(TMP / 'infer_task.py')], stdout=f, stderr=subprocess.STDOUT, cwd=str(TMP))
print('rc', rc)
