"""Real PPL inference of tiny_mcq with SmolLM2-135M as a base model (tasks/openicl_infer.py, PPLInferencer)."""
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from mmengine.config import Config  # noqa: E402

from common import OC, PY, TMP, mcq_ds  # noqa: E402

PPL_TEMPLATE = {opt: dict(round=[dict(role='HUMAN', prompt='Question: {question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:'),
                                 dict(role='BOT', prompt=f' {opt}')]) for opt in 'ABCD'}


def base_model():
    p = str(Path.home() / '.cache/budeval/models/SmolLM2-135M-Instruct')
    return dict(abbr='smollm2-135m-base', type='opencompass.models.HuggingFaceBaseModel', path=p, tokenizer_path=p,
                model_kwargs=dict(trust_remote_code=False), tokenizer_kwargs=dict(trust_remote_code=False),
                max_seq_len=2048, batch_size=4, run_cfg=dict(num_gpus=0))


def ppl_ds():
    ds = mcq_ds()
    ds['abbr'] = 'tiny_mcq_ppl'
    ds['infer_cfg'] = dict(
        prompt_template=dict(type='opencompass.openicl.icl_prompt_template.PromptTemplate', template=PPL_TEMPLATE),
        retriever=dict(type='opencompass.openicl.icl_retriever.icl_zero_retriever.ZeroRetriever'),
        inferencer=dict(type='opencompass.openicl.icl_inferencer.icl_ppl_inferencer.PPLInferencer'))
    ds['eval_cfg'] = dict(evaluator=dict(type='opencompass.openicl.icl_evaluator.icl_hf_evaluator.AccEvaluator'))
    return ds


if __name__ == '__main__':
    r = TMP / 'infer_ppl' / 'run'
    (r / 'logs/infer/smollm2-135m-base').mkdir(parents=True, exist_ok=True)
    Config(dict(models=[base_model()], datasets=[[ppl_ds()]], work_dir=str(r))).dump(str(TMP / 'ppl_task.py'))
    with open(r / 'logs/infer/smollm2-135m-base/tiny_mcq_ppl.out', 'w') as f:
        rc = subprocess.call([PY, str(OC / 'tasks/openicl_infer.py'), str(TMP / 'ppl_task.py')], stdout=f,
                             stderr=subprocess.STDOUT, cwd=str(TMP))
    print('rc', rc)
