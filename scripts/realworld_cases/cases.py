"""Build the new real-world cases. Usage: <oc-venv>/bin/python cases.py [case ...] (default: all)."""
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (M, MCQ_RUN, OUT, QA_RUN, REPO_DS, TMP, budeval_files, copy_infer_log, copy_pred, dump_config,  # noqa: E402
                    mcq_ds, model_cfg, new_case, qa_ds, rewrite_paths, run_dir, run_eval, summarize)

GRADER = ('Please as a grading expert, judge whether the final answer given by the candidate is consistent with the '
          'standard answer.\n<Original Question Begin>:\n{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\n'
          '<Original Question End>\n<Gold Target Begin>:\n{answer}\n<Gold Target End>\n'
          '<Predicted Answer Begin>:\n{prediction}\n<Predicted End>\n'
          'Judging the correctness of candidates\' answers: A: CORRECT, B: INCORRECT. Just return the letters "A" '
          'or "B", with no text around it.')
JUDGE = dict(abbr='qwen2.5-7b-instruct-judge', type='opencompass.models.OpenAISDK', path='Qwen/Qwen2.5-7B-Instruct',
             key='ENV', openai_api_base='http://judge.internal:8000/v1', query_per_second=4, batch_size=8,
             max_out_len=16, temperature=0.001,
             meta_template=dict(round=[dict(role='HUMAN', api_role='HUMAN'),
                                       dict(role='BOT', api_role='BOT', generate=True)]))


def full_cfg(models, datasets, **extra):
    cfg = dict(models=models, datasets=datasets)
    cfg.update(extra)
    return cfg


def case_cascade():
    """CascadeEvaluator (cascade mode): rule verdict [F,F,F,T], LLM judge re-grades the 3 failures, final wins."""
    case = new_case('cascade-final-verdict')
    ts = '20261201_091500'
    r = run_dir(case, ts)
    m = model_cfg()
    ds = mcq_ds()
    judge_ds = copy.deepcopy(ds)
    ds['eval_cfg'] = dict(
        evaluator=dict(
            type='opencompass.evaluator.CascadeEvaluator',
            rule_evaluator=dict(
                type='opencompass.openicl.icl_evaluator.AccEvaluator',
                pred_postprocessor=dict(type='opencompass.utils.text_postprocessors.first_option_postprocess',
                                        options='ABCD')),
            llm_evaluator=dict(
                type='opencompass.evaluator.GenericLLMEvaluator',
                prompt_template=dict(type='opencompass.openicl.icl_prompt_template.PromptTemplate',
                                     template=dict(round=[dict(role='HUMAN', prompt=GRADER)])),
                dataset_cfg=judge_ds,
                judge_cfg=JUDGE,
                dict_postprocessor=dict(type='opencompass.datasets.generic.generic_llmjudge_postprocess')),
            parallel=False),
        pred_role='BOT')
    copy_pred(r, MCQ_RUN, 'tiny_mcq')
    copy_infer_log(r, MCQ_RUN, 'tiny_mcq')
    # The judge's own output for the 3 rule failures (indices 0,1,2), as GenericLLMEvaluator's GenInferencer writes
    # it to results/{m}/{d}_llm_judge_replica0.json (cascade_evaluator.py:203-206, generic_llm_evaluator.py:64).
    # The judge model is an API model, so this file is authored here in that exact format; CascadeEvaluator then
    # loads it (cascade_evaluator.py:210-233) and computes every verdict itself.
    data = [json.loads(x) for x in (Path(REPO_DS) / 'tiny_mcq.jsonl').read_text().splitlines()]
    preds = json.loads((r / 'predictions' / M / 'tiny_mcq.json').read_text())
    verdicts = {0: 'A', 1: 'B', 2: 'B'}
    judge_out = {}
    for k, (i, v) in enumerate(verdicts.items()):
        row = data[i]
        prompt = GRADER.format(prediction=preds[str(i)]['prediction'], **row)
        judge_out[str(k)] = {'origin_prompt': [{'role': 'HUMAN', 'prompt': prompt}], 'prediction': v,
                             'gold': row['answer']}
    jp = r / 'results' / M / 'tiny_mcq_llm_judge_replica0.json'
    jp.parent.mkdir(parents=True, exist_ok=True)
    with open(jp, 'w', encoding='utf-8') as f:
        json.dump(judge_out, f, indent=4, ensure_ascii=False)
    cfg = full_cfg([m], [ds])
    dump_config(r, cfg, ts, 40211)
    rc = run_eval(r, m, ds)
    out = summarize(r, cfg, ts)
    budeval_files(case / 'run', cfg, out)
    rewrite_paths(case)
    print('cascade rc', rc)



GRADER_QA = ('Please as a grading expert, judge whether the final answer given by the candidate is consistent with '
             'the standard answer.\n<Original Question Begin>:\n{question}\n<Original Question End>\n'
             '<Gold Target Begin>:\n{answer}\n<Gold Target End>\n<Predicted Answer Begin>:\n{prediction}\n'
             '<Predicted End>\nJudging the correctness of candidates\' answers: A: CORRECT, B: INCORRECT. '
             'Just return the letters "A" or "B".')


def case_llm_judge():
    """GenericLLMEvaluator with a REAL local judge (SmolLM2-135M as judge): writes {d}_replica0.json beside results."""
    from pathlib import Path as P
    case = new_case('llm-judge-replica-file')
    ts = '20261201_094500'
    r = run_dir(case, ts)
    m = model_cfg()
    ds = qa_ds()
    judge = dict(abbr='smollm2-135m-judge', type='opencompass.models.HuggingFacewithChatTemplate',
                 path=str(P.home() / '.cache/budeval/models/SmolLM2-135M-Instruct'),
                 tokenizer_path=str(P.home() / '.cache/budeval/models/SmolLM2-135M-Instruct'),
                 model_kwargs=dict(trust_remote_code=False), tokenizer_kwargs=dict(trust_remote_code=False),
                 generation_kwargs=dict(do_sample=False), max_out_len=8, max_seq_len=2048, batch_size=5,
                 run_cfg=dict(num_gpus=0))
    judge_ds = copy.deepcopy(ds)
    ds['eval_cfg'] = dict(
        evaluator=dict(
            type='opencompass.evaluator.GenericLLMEvaluator',
            prompt_template=dict(type='opencompass.openicl.icl_prompt_template.PromptTemplate',
                                 template=dict(round=[dict(role='HUMAN', prompt=GRADER_QA)])),
            dataset_cfg=judge_ds,
            judge_cfg=judge,
            dict_postprocessor=dict(type='opencompass.datasets.generic.generic_llmjudge_postprocess')),
        pred_role='BOT')
    copy_pred(r, QA_RUN, 'tiny_qa')
    copy_infer_log(r, QA_RUN, 'tiny_qa')
    cfg = full_cfg([m], [ds])
    dump_config(r, cfg, ts, 40988)
    rc = run_eval(r, m, ds)
    out = summarize(r, cfg, ts)
    budeval_files(case / 'run', cfg, out)
    rewrite_paths(case)
    print('llm_judge rc', rc)


def case_needle():
    """NeedleBench origin evaluator: a numeric per-example `score` (0-100) and `edit_distance`, no boolean verdict."""
    case = new_case('numeric-per-example-score')
    ts = '20261201_100500'
    r = run_dir(case, ts)
    data_dir = case / 'data'
    data_dir.mkdir()
    rows = [json.loads(x) for x in (Path(REPO_DS) / 'tiny_qa.jsonl').read_text().splitlines()]
    with open(data_dir / 'tiny_needle.jsonl', 'w') as f:
        for row in rows:
            f.write(json.dumps({'question': row['question'], 'answer': f"{row['answer']}*{row['answer']}"}) + '\n')
    m = model_cfg()
    ds = qa_ds()
    ds['abbr'] = 'tiny_needle'
    ds['path'] = str(data_dir / 'tiny_needle.jsonl')
    ds['eval_cfg'] = dict(evaluator=dict(type='opencompass.datasets.needlebench.origin.NeedleBenchOriginEvaluator'),
                          pred_role='BOT')
    copy_pred(r, QA_RUN, 'tiny_qa', 'tiny_needle', gold_map=lambda g: f'{g}*{g}')
    copy_infer_log(r, QA_RUN, 'tiny_qa', 'tiny_needle')
    cfg = full_cfg([m], [ds])
    dump_config(r, cfg, ts, 41410)
    rc = run_eval(r, m, ds)
    out = summarize(r, cfg, ts)
    budeval_files(case / 'run', cfg, out)
    rewrite_paths(case)
    print('needle rc', rc)


def case_reuse_narrower():
    """Run 1: tiny_qa ok, tiny_mcq eval fails. Run 2 (`-m eval -r ts`) with a config listing only tiny_mcq."""
    case = new_case('eval-reuse-narrower-config')
    ts1, ts2 = '20261201_101000', '20261201_103000'
    r = run_dir(case, ts1)
    m = model_cfg()
    qa = qa_ds()
    mcq = mcq_ds()
    bad = copy.deepcopy(mcq)
    bad['eval_cfg']['evaluator']['option'] = ['A', 'B', 'C', 'D']   # typo'd keyword -> TypeError in the eval task
    del bad['eval_cfg']['evaluator']['options']
    copy_pred(r, QA_RUN, 'tiny_qa')
    copy_infer_log(r, QA_RUN, 'tiny_qa')
    copy_pred(r, MCQ_RUN, 'tiny_mcq')
    copy_infer_log(r, MCQ_RUN, 'tiny_mcq')
    cfg1 = full_cfg([m], [qa, bad])
    dump_config(r, cfg1, ts1, 41877)
    run_eval(r, m, qa)
    rc1 = run_eval(r, m, bad)
    out = summarize(r, cfg1, ts1)
    cfg2 = full_cfg([m], [mcq])
    dump_config(r, cfg2, ts2, 42051)
    rc2 = run_eval(r, m, mcq)
    out2 = summarize(r, cfg2, ts2)
    budeval_files(case / 'run', cfg2, out + out2)
    rewrite_paths(case)
    print('reuse rc', rc1, rc2)


def case_groups():
    """summary_groups: weighted, std, sum, and a group with a missing subset; dataset_abbrs fixes the row order."""
    case = new_case('summary-groups-weighted')
    ts = '20261201_104500'
    r = run_dir(case, ts)
    m = model_cfg()
    qa, mcq = qa_ds(), mcq_ds()
    for src, d in ((QA_RUN, 'tiny_qa'), (MCQ_RUN, 'tiny_mcq')):
        copy_pred(r, src, d)
        copy_infer_log(r, src, d)
    groups = [
        dict(name='tiny_weighted', subsets=['tiny_qa', 'tiny_mcq'], weights=dict(tiny_qa=1, tiny_mcq=3)),
        dict(name='tiny_std', subsets=['tiny_qa', 'tiny_mcq'], std=True),
        dict(name='tiny_sum', subsets=['tiny_qa', 'tiny_mcq'], sum=True),
        dict(name='tiny_with_gsm8k', subsets=['tiny_qa', 'gsm8k']),
    ]
    summarizer = dict(dataset_abbrs=['tiny_weighted', 'tiny_std', 'tiny_sum', 'tiny_with_gsm8k',
                                     '--------- Details ---------', 'tiny_mcq', 'tiny_qa'],
                      summary_groups=groups)
    cfg = full_cfg([m], [qa, mcq], summarizer=summarizer)
    dump_config(r, cfg, ts, 42300)
    run_eval(r, m, qa)
    run_eval(r, m, mcq)
    out = summarize(r, cfg, ts, dataset_abbrs=summarizer['dataset_abbrs'], summary_groups=groups)
    budeval_files(case / 'run', cfg, out)
    rewrite_paths(case)


def case_summarizer_abbr():
    """A model with `summarizer_abbr`: the summary column is named differently from results/ and predictions/."""
    case = new_case('summarizer-abbr-column')
    ts = '20261201_110000'
    r = run_dir(case, ts)
    m = model_cfg()
    m['summarizer_abbr'] = 'SmolLM2-135M (chat)'
    qa = qa_ds()
    copy_pred(r, QA_RUN, 'tiny_qa')
    copy_infer_log(r, QA_RUN, 'tiny_qa')
    cfg = full_cfg([m], [qa])
    dump_config(r, cfg, ts, 42533)
    run_eval(r, m, qa)
    out = summarize(r, cfg, ts)
    budeval_files(case / 'run', cfg, out)
    rewrite_paths(case)


CUSTOM_EVAL = """import math

import numpy as np

from opencompass.openicl.icl_evaluator import BaseEvaluator
from opencompass.utils.text_postprocessors import first_option_postprocess


class LetterStatsEvaluator(BaseEvaluator):
    \"\"\"Accuracy plus per-letter precision and the odds of answering A (a user-written evaluator).\"\"\"

    def score(self, predictions, references):
        parsed = [first_option_postprocess(p, 'ABCD') for p in predictions]
        details = [{'pred': p, 'parsed': q, 'answer': r, 'correct': q == r}
                   for p, q, r in zip(predictions, parsed, references)]
        hits_a = np.array([q == 'A' and r == 'A' for q, r in zip(parsed, references)], dtype=float)
        said_a = np.array([q == 'A' for q in parsed], dtype=float)
        with np.errstate(invalid='ignore', divide='ignore'):
            precision_a = float(100 * hits_a.sum() / said_a.sum())
        n_a = int(said_a.sum())
        not_a_per_a = (len(parsed) - n_a) / n_a if n_a else math.inf
        return {'accuracy': 100 * sum(d['correct'] for d in details) / len(details),
                'precision_A': precision_a, 'not_A_per_A': not_a_per_a, 'details': details}
"""


def case_nan_inf():
    """A results file with NaN and Infinity (json.dump allow_nan) and the summary cells `nan` / `inf`."""
    case = new_case('nan-inf-in-results')
    ts = '20261201_111500'
    r = run_dir(case, ts)
    (TMP / 'custom_metrics.py').write_text(CUSTOM_EVAL)
    m = model_cfg()
    mcq = mcq_ds()
    mcq['eval_cfg'] = dict(evaluator=dict(type='custom_metrics.LetterStatsEvaluator'), pred_role='BOT')
    qa = qa_ds()
    for src, d in ((QA_RUN, 'tiny_qa'), (MCQ_RUN, 'tiny_mcq')):
        copy_pred(r, src, d)
        copy_infer_log(r, src, d)
    cfg = full_cfg([m], [qa, mcq])
    dump_config(r, cfg, ts, 42710)
    run_eval(r, m, qa)
    rc = run_eval(r, m, mcq, env_extra={'PYTHONPATH': str(TMP)})
    import sys as _s
    _s.path.insert(0, str(TMP))
    out = summarize(r, cfg, ts)
    budeval_files(case / 'run', cfg, out)
    (case / 'custom_metrics.py').write_text(CUSTOM_EVAL)   # the user's evaluator module (on PYTHONPATH)
    rewrite_paths(case)
    print('nan rc', rc)


SHARD1_LOG = """{d} - OpenCompass - INFO - Task [smollm2-135m-instruct/tiny_qa_1]
{d} - OpenCompass - WARNING - pad_token_id is not set for the tokenizer.
{d} - OpenCompass - WARNING - Using 2 as pad_token_id.
`torch_dtype` is deprecated! Use `dtype` instead!
{d} - OpenCompass - INFO - using stop words: ['<|im_end|>', '<|im_start|>']
{d} - OpenCompass - INFO - The Progress of This Task --> Models: 1/1, Datasets: 1/1
Map:   0%|          | 0/2 [00:00<?, ? examples/s]Map: 100%|██████████| 2/2 [00:00<00:00, 811.37 examples/s]
{d} - OpenCompass - INFO - Start inferencing [smollm2-135m-instruct/tiny_qa_1]
[2026-12-01 11:31:07,512] [opencompass.openicl.icl_inferencer.icl_gen_inferencer] [INFO] Starting build dataloader
[2026-12-01 11:31:07,512] [opencompass.openicl.icl_inferencer.icl_gen_inferencer] [INFO] Starting inference process...
  0%|          | 0/1 [00:00<?, ?it/s]  0%|          | 0/1 [00:00<?, ?it/s]
Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/opencompass/tasks/openicl_infer.py", line 177, in <module>
    inferencer.run()
  File "/opt/venv/lib/python3.11/site-packages/opencompass/tasks/openicl_infer.py", line 103, in run
    self._inference()
  File "/opt/venv/lib/python3.11/site-packages/opencompass/tasks/openicl_infer.py", line 150, in _inference
    inferencer.inference(retriever,
  File "/opt/venv/lib/python3.11/site-packages/opencompass/openicl/icl_inferencer/icl_gen_inferencer.py", line 183, in inference
    results = self.model.generate_from_template(
  File "/opt/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1773, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
RuntimeError: [enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to allocate 4194304000 bytes.
"""


def case_shard():
    """SizePartitioner split tiny_qa into tiny_qa_0 (3) and tiny_qa_1 (2); shard 1's infer died (OOM)."""
    case = new_case('sharded-failed-shard')
    ts = '20261201_113000'
    r = run_dir(case, ts)
    m = model_cfg()
    qa = qa_ds()
    copy_pred(r, QA_RUN, 'tiny_qa', 'tiny_qa_0', keep=[0, 1, 2])
    copy_infer_log(r, QA_RUN, 'tiny_qa', 'tiny_qa_0')
    (r / 'logs/infer' / M / 'tiny_qa_1.out').write_text(SHARD1_LOG.format(d='12/01 11:31:07'))
    cfg = full_cfg([m], [qa], infer=dict(partitioner=dict(type='opencompass.partitioners.SizePartitioner',
                                                           max_task_size=3)))
    dump_config(r, cfg, ts, 42944)
    rc = run_eval(r, m, qa)
    out = summarize(r, cfg, ts)
    budeval_files(case / 'run', cfg, out)
    rewrite_paths(case)
    print('shard rc', rc)


def case_abbr_comma():
    """A dataset abbr with spaces, brackets and a comma: the CSV writes the comma as a space (default.py:378)."""
    case = new_case('abbr-comma-brackets')
    ts = '20261201_114500'
    r = run_dir(case, ts)
    m = model_cfg()
    qa = qa_ds()
    qa['abbr'] = 'tiny qa [v2], en'
    copy_pred(r, QA_RUN, 'tiny_qa', 'tiny qa [v2], en')
    copy_infer_log(r, QA_RUN, 'tiny_qa', 'tiny qa [v2], en')
    cfg = full_cfg([m], [qa])
    dump_config(r, cfg, ts, 43120)
    run_eval(r, m, qa)
    out = summarize(r, cfg, ts)
    budeval_files(case / 'run', cfg, out)
    rewrite_paths(case)


def case_multi_faceted():
    """MultiFacetedSummarizer: only summary/summary_{ts}/{profile}.csv, no summary_{ts}.csv at all."""
    from opencompass.summarizers import MultiFacetedSummarizer
    case = new_case('multi-faceted-profiles')
    ts = '20261201_120000'
    r = run_dir(case, ts)
    m = model_cfg()
    qa, mcq = qa_ds(), mcq_ds()
    for src, d in ((QA_RUN, 'tiny_qa'), (MCQ_RUN, 'tiny_mcq')):
        copy_pred(r, src, d)
        copy_infer_log(r, src, d)
    groups = [dict(name='tiny', subsets=['tiny_qa', 'tiny_mcq'])]
    profiles = [dict(name='knowledge', dataset_abbrs=['tiny_qa']),
                dict(name='overall', dataset_abbrs=['tiny', 'tiny_mcq', 'tiny_qa', 'gsm8k'])]
    cfg = full_cfg([m], [qa, mcq], summarizer=dict(type='opencompass.summarizers.MultiFacetedSummarizer',
                                                    dataset_abbrs_list=profiles, summary_groups=groups))
    dump_config(r, cfg, ts, 43377)
    run_eval(r, m, qa)
    run_eval(r, m, mcq)
    out = summarize(r, cfg, ts, cls=MultiFacetedSummarizer, dataset_abbrs_list=profiles, summary_groups=groups)
    budeval_files(case / 'run', cfg, out)
    rewrite_paths(case)


def case_subjective_by_judge():
    """DefaultSubjectiveSummarizer: summary/summary_{ts}_by_{judge}.csv from results/{base}_{m}_judged-by--{j}/."""
    from opencompass.datasets.subjective.alpacaeval import alpacaeval_postprocess
    from opencompass.summarizers import DefaultSubjectiveSummarizer
    case = new_case('subjective-by-judge')
    ts = '20261201_121500'
    r = run_dir(case, ts)
    m = model_cfg()
    src = OUT / 'subjective-all-results' / 'run' / '20261130_101500'
    preds = json.loads((src / 'predictions' / M / 'alpaca_eval.json').read_text())
    caps = ['helpful_base', 'koala', 'vicuna', 'oasst']
    prompts = ['Write a haiku about rain.', 'Explain recursion briefly.', 'Give me three tips for sleeping better.',
               'What is the boiling point of water at sea level?']
    answers = ['answer 0', 'answer 1', 'answer 2', 'Water boils at 100 degrees Celsius at sea level.']
    preds = {str(i): {'origin_prompt': [{'role': 'HUMAN', 'prompt': prompts[i]}], 'prediction': answers[i],
                      'gold': {'capability': caps[i], 'ref': ''}} for i in range(4)}
    pdir = r / 'predictions' / M
    pdir.mkdir(parents=True, exist_ok=True)
    with open(pdir / 'alpaca_eval.json', 'w', encoding='utf-8') as f:
        json.dump(preds, f, indent=4, ensure_ascii=False)
    base = dict(abbr='gpt4-turbo', type='opencompass.models.OpenAI', path='gpt-4-1106-preview', key='ENV',
                max_out_len=4096, batch_size=8, query_per_second=1)
    judge = dict(abbr='judge-model', type='opencompass.models.OpenAISDK', path='judge-model', key='ENV',
                 openai_api_base='http://judge.internal:8000/v1', max_out_len=16, batch_size=8, temperature=0.0)
    ds = dict(abbr='alpaca_eval', type='opencompass.datasets.subjective.alpacaeval.AlpacaEvalDataset',
              path='./data/subjective/alpaca_eval', name='alpaca_eval', base_models=[base], mode='m2n',
              given_pred=[dict(abbr='gpt4-turbo', path='./data/subjective/alpaca_eval/gpt4-turbo')],
              reader_cfg=dict(input_columns=['question'], output_column='judge'),
              infer_cfg=dict(prompt_template=dict(type='opencompass.openicl.icl_prompt_template.PromptTemplate',
                                                  template=dict(round=[dict(role='HUMAN', prompt='{question}')])),
                             retriever=dict(type='opencompass.openicl.icl_retriever.ZeroRetriever'),
                             inferencer=dict(type='opencompass.openicl.icl_inferencer.GenInferencer',
                                             max_out_len=4096)),
              eval_cfg=dict(evaluator=dict(type='opencompass.openicl.icl_evaluator.LMEvaluator',
                                           prompt_template=dict(type='opencompass.openicl.icl_prompt_template.'
                                                                'PromptTemplate',
                                                                template=dict(round=[dict(role='HUMAN',
                                                                                          prompt='{prediction}')])),
                                           dict_postprocessor=dict(type='alpacaeval')),
                            pred_role='BOT'))
    # the judge's raw output (m = first answer better, M = second), then the real alpacaeval dict postprocessor
    order = [('gpt4-turbo', M), (M, 'gpt4-turbo'), ('gpt4-turbo', M), (M, 'gpt4-turbo')]
    verdict = ['M', 'm', 'm', 'M']
    raw = {str(i): {'origin_prompt': [{'role': 'HUMAN', 'prompt': f'Which answer to "{prompts[i]}" is better?'}],
                    'prediction': verdict[i],
                    'gold': {'capability': caps[i], 'answer1': order[i][0], 'answer2': order[i][1]}}
           for i in range(4)}
    jdir = r / 'results' / f'gpt4-turbo_{M}_judged-by--judge-model'
    jdir.mkdir(parents=True, exist_ok=True)
    res = alpacaeval_postprocess(copy.deepcopy(raw), str(jdir / 'alpaca_eval.json'))
    import mmengine
    mmengine.dump(res, open(jdir / 'alpaca_eval.json', 'w', encoding='utf-8'), file_format='json',
                  ensure_ascii=False, indent=4)   # tasks/subjective_eval.py:414-419
    (r / 'logs/infer' / M).mkdir(parents=True, exist_ok=True)
    (r / 'logs/infer' / M / 'alpaca_eval.out').write_text(
        '12/01 12:15:10 - OpenCompass - INFO - Task [smollm2-135m-instruct/alpaca_eval]\n'
        '12/01 12:15:31 - OpenCompass - INFO - time elapsed: 21.06s\n')
    (r / 'logs/eval' / f'gpt4-turbo_{M}_judged-by--judge-model').mkdir(parents=True, exist_ok=True)
    (r / 'logs/eval' / f'gpt4-turbo_{M}_judged-by--judge-model' / 'alpaca_eval.out').write_text(
        '12/01 12:16:02 - OpenCompass - INFO - Task [gpt4-turbo_smollm2-135m-instruct_judged-by--judge-model/'
        'alpaca_eval]\n')
    cfg = full_cfg([m], [ds], judge_models=[judge],
                   eval=dict(partitioner=dict(type='opencompass.partitioners.sub_naive.SubjectiveNaivePartitioner',
                                              models=[m], judge_models=[judge], mode='m2n', base_models=[base],
                                              compare_models=[m]),
                             runner=dict(type='opencompass.runners.LocalRunner', max_num_workers=2,
                                         task=dict(type='opencompass.tasks.subjective_eval.SubjectiveEvalTask'))),
                   summarizer=dict(type='opencompass.summarizers.DefaultSubjectiveSummarizer'))
    dump_config(r, cfg, ts, 43601)
    out = summarize(r, cfg, ts, cls=DefaultSubjectiveSummarizer)
    budeval_files(case / 'run', cfg, out)
    rewrite_paths(case)


def case_n_no_verdict():
    """n=2 with an evaluator that gives no details: results = the LAST replica's dict (no '(2 runs average)'
    suffix, icl_base_evaluator.py:234) and dict-shaped GEN details over all 8 predictions (openicl_eval.py:456-513)."""
    case = new_case('n-replicas-no-verdict')
    ts = '20261201_123000'
    r = run_dir(case, ts)
    # real sampled n=2 predictions (do_sample, temperature 1.0) made by infer_sampled.py with openicl_infer.py
    src = Path(__file__).parent / 'src'
    m = model_cfg()
    m['generation_kwargs'] = dict(do_sample=True, temperature=1.0, top_p=0.95)
    ds = mcq_ds()
    ds['n'] = 2
    ds['eval_cfg'] = dict(evaluator=dict(
        type='opencompass.openicl.icl_evaluator.AccEvaluator',
        pred_postprocessor=dict(type='opencompass.utils.text_postprocessors.first_option_postprocess',
                                options='ABCD')), pred_role='BOT')
    pdir = r / 'predictions' / M
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / 'tiny_mcq.json').write_bytes((src / 'tiny_mcq_n2_sampled.json').read_bytes())
    (r / 'logs/infer' / M).mkdir(parents=True, exist_ok=True)
    (r / 'logs/infer' / M / 'tiny_mcq.out').write_bytes((src / 'tiny_mcq_n2_sampled.out').read_bytes())
    cfg = full_cfg([m], [ds])
    dump_config(r, cfg, ts, 43820)
    rc = run_eval(r, m, ds)
    out = summarize(r, cfg, ts)
    budeval_files(case / 'run', cfg, out)
    rewrite_paths(case)
    print('n_no_verdict rc', rc)


MT_Q = [('writing', 'Write a two-line poem about the sea.', 'The sea is wide and blue,\nIt waves hello to you.'),
        ('roleplay', 'Pretend you are a pirate and greet me.', 'Ahoy, matey! Welcome aboard!'),
        ('reasoning', 'If all cats are animals and Tom is a cat, is Tom an animal?', 'Yes, Tom is a cat.'),
        ('math', 'What is 12 * 12?', '12 * 12 = 124'),
        ('coding', 'Write a Python function that returns the square of x.', 'def square(x): return x * 2'),
        ('extraction', 'Extract the year: "Founded in 1998 in Paris."', 'The year is 1998.'),
        ('stem', 'What gas do plants absorb from the air?', 'Plants absorb carbon dioxide (CO2).'),
        ('humanities', 'Who wrote "Hamlet"?', 'William Shakespeare wrote Hamlet.')]
MT_RATING = [6, 7, 5, 1, 2, 9, 8, 8]


def case_mtbench_crlf():
    """`summarizer=dict(function=...)` path with MTBenchSummarizer (csv.writer -> CRLF line ends) and the
    Subjective_all_results table; the model's predictions are in ChatInferencer's key order (gold first)."""
    from opencompass.summarizers.subjective import MTBenchSummarizer, SubjectiveSummarizer
    import contextlib
    import io
    import mmengine
    case = new_case('mtbench-capability-crlf')
    ts = '20261201_124500'
    r = run_dir(case, ts)
    m = model_cfg()
    judge = dict(abbr='gpt-4o-2024-08-06', type='opencompass.models.OpenAISDK', path='gpt-4o-2024-08-06', key='ENV',
                 max_out_len=1024, batch_size=8, temperature=0.0)
    preds = {}
    raw = {}
    for i, (cap, q, a) in enumerate(MT_Q):
        gold = {'capability': cap, 'ref': '', 'question_id': 81 + i}
        preds[str(i)] = {'gold': gold, 'prediction': a, 'origin_prompt': [{'role': 'HUMAN', 'prompt': q}]}
        raw[str(i)] = {'origin_prompt': [{'role': 'HUMAN', 'prompt': f'[Question]\n{q}\n\n[The Start of Assistant\'s '
                                          f'Answer]\n{a}\n[The End of Assistant\'s Answer]'}],
                       'prediction': f'The answer is judged on helpfulness and accuracy. Rating: [[{MT_RATING[i]}]]',
                       'gold': gold}
    pdir = r / 'predictions' / M
    pdir.mkdir(parents=True, exist_ok=True)
    with open(pdir / 'mtbench_single.json', 'w', encoding='utf-8') as f:
        json.dump(preds, f, indent=4, ensure_ascii=False)
    jdir = r / 'results' / f'{M}_judged-by--{judge["abbr"]}'
    jdir.mkdir(parents=True, exist_ok=True)
    mmengine.dump(raw, open(jdir / 'mtbench_single.json', 'w', encoding='utf-8'), file_format='json',
                  ensure_ascii=False, indent=4)
    (r / 'logs/infer' / M).mkdir(parents=True, exist_ok=True)
    (r / 'logs/infer' / M / 'mtbench_single.out').write_text(
        '12/01 12:45:10 - OpenCompass - INFO - Task [smollm2-135m-instruct/mtbench_single]\n'
        '12/01 12:45:52 - OpenCompass - INFO - time elapsed: 41.88s\n')
    (r / 'logs/eval' / jdir.name).mkdir(parents=True, exist_ok=True)
    (r / 'logs/eval' / jdir.name / 'mtbench_single.out').write_text(
        f'12/01 12:46:03 - OpenCompass - INFO - Task [{jdir.name}/mtbench_single]\n')
    ds = dict(abbr='mtbench_single', type='opencompass.datasets.MTBenchDataset', path='./data/subjective/mtbench',
              name='mtbench_single', judge_type='single',
              reader_cfg=dict(input_columns=['dialogue', 'capability', 'system_prompt', 'prompt_template'],
                              output_column='judge'),
              infer_cfg=dict(prompt_template=dict(type='opencompass.openicl.icl_prompt_template.PromptTemplate',
                                                  template="""{dialogue}"""),
                             retriever=dict(type='opencompass.openicl.icl_retriever.ZeroRetriever'),
                             inferencer=dict(type='opencompass.openicl.icl_inferencer.ChatInferencer',
                                             max_seq_len=4096, max_out_len=1024, infer_mode='last')),
              eval_cfg=dict(evaluator=dict(type='opencompass.openicl.icl_evaluator.LMEvaluator',
                                           prompt_template=dict(type='opencompass.openicl.icl_prompt_template.'
                                                                'PromptTemplate',
                                                                template=dict(round=[dict(role='HUMAN',
                                                                                          prompt='{prediction}')]))),
                            pred_role='BOT'),
              summarizer=dict(type='opencompass.summarizers.subjective.MTBenchSummarizer', judge_type='single'))
    cfg = full_cfg([m], [ds], judge_models=[judge],
                   eval=dict(partitioner=dict(type='opencompass.partitioners.sub_naive.SubjectiveNaivePartitioner',
                                              models=[m], judge_models=[judge]),
                             runner=dict(type='opencompass.runners.LocalRunner', max_num_workers=2,
                                         task=dict(type='opencompass.tasks.subjective_eval.SubjectiveEvalTask'))),
                   summarizer=dict(function='subjective'))
    dump_config(r, cfg, ts, 44017)
    from mmengine.config import Config
    c = Config(copy.deepcopy(cfg))
    c['work_dir'] = str(r)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):   # cli/main.py:478-500
        temp = copy.deepcopy(c)
        temp.datasets = [c.datasets[0]]
        score = MTBenchSummarizer(config=temp).summarize(time_str=ts)
        SubjectiveSummarizer(config=c, function='subjective').summarize(time_str=ts, subjective_scores=[score])
    budeval_files(case / 'run', cfg, buf.getvalue())
    rewrite_paths(case)


def case_gpass_sampled():
    """n=2, k=2 with a verdict-giving evaluator on REAL sampled predictions whose replicas differ: details[i].correct
    is [replica0, replica1]; G-Pass@2_* and mG-Pass@2 metrics (icl_base_evaluator.py:193-209)."""
    case = new_case('gpass-sampled-replicas')
    ts = '20261201_130000'
    r = run_dir(case, ts)
    src = Path(__file__).parent / 'src'
    m = model_cfg()
    m['generation_kwargs'] = dict(do_sample=True, temperature=1.0, top_p=0.95)
    ds = mcq_ds()
    ds['n'] = 2
    ds['k'] = 2
    pdir = r / 'predictions' / M
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / 'tiny_mcq.json').write_bytes((src / 'tiny_mcq_n2_sampled.json').read_bytes())
    (r / 'logs/infer' / M).mkdir(parents=True, exist_ok=True)
    (r / 'logs/infer' / M / 'tiny_mcq.out').write_bytes((src / 'tiny_mcq_n2_sampled.out').read_bytes())
    cfg = full_cfg([m], [ds])
    dump_config(r, cfg, ts, 44290)
    rc = run_eval(r, m, ds)
    out = summarize(r, cfg, ts)
    budeval_files(case / 'run', cfg, out)
    rewrite_paths(case)
    print('gpass rc', rc)


def case_model_eval_crash():
    """Two models, both inferred; model 2's eval crashes (its model-level pred_postprocessor names an unknown
    postprocessor, openicl_eval.py:232-241), so results/<model2>/ does not exist at all; its column is '-'."""
    case = new_case('second-model-results-missing')
    ts = '20261201_131500'
    r = run_dir(case, ts)
    m1 = model_cfg()
    m2 = model_cfg()
    m2['abbr'] = 'smollm2-135m-instruct-ft'
    m2['path'] = m2['tokenizer_path'] = '/workspace/models/SmolLM2-135M-Instruct-ft'
    m2['pred_postprocessor'] = dict(type='strip-think-tags')
    qa = qa_ds()
    copy_pred(r, QA_RUN, 'tiny_qa')
    copy_infer_log(r, QA_RUN, 'tiny_qa')
    copy_pred(r, QA_RUN, 'tiny_qa', model=m2['abbr'])
    copy_infer_log(r, QA_RUN, 'tiny_qa', model=m2['abbr'])
    t = (r / 'logs/infer' / m2['abbr'] / 'tiny_qa.out').read_text()
    (r / 'logs/infer' / m2['abbr'] / 'tiny_qa.out').write_text(t.replace(f'[{M}/', f"[{m2['abbr']}/"))
    cfg = full_cfg([m1, m2], [qa])
    dump_config(r, cfg, ts, 44512)
    run_eval(r, m1, qa)
    rc = run_eval(r, m2, qa)
    out = summarize(r, cfg, ts)
    budeval_files(case / 'run', cfg, out)
    rewrite_paths(case)
    print('model2 rc', rc)


def case_ppl():
    """PPL inference (real, SmolLM2 as a base model) + AccEvaluator: no evaluator details, so OpenCompass formats
    dict details of type PPL with a SCALAR `correct` (openicl_eval.py:483-498) and adds correct_bpb/incorrect_bpb
    (openicl_eval.py:339-344) because the predictions carry BPB."""
    from infer_ppl import base_model, ppl_ds
    case = new_case('ppl-scalar-correct')
    ts = '20261201_133000'
    r = run_dir(case, ts)
    src = Path(__file__).parent / 'src'
    m = base_model()
    ds = ppl_ds()
    pdir = r / 'predictions' / m['abbr']
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / 'tiny_mcq_ppl.json').write_bytes((src / 'tiny_mcq_ppl.json').read_bytes())
    (r / 'logs/infer' / m['abbr']).mkdir(parents=True, exist_ok=True)
    (r / 'logs/infer' / m['abbr'] / 'tiny_mcq_ppl.out').write_bytes((src / 'tiny_mcq_ppl.out').read_bytes())
    cfg = full_cfg([m], [ds])
    dump_config(r, cfg, ts, 44777)
    rc = run_eval(r, m, ds)
    out = summarize(r, cfg, ts)
    budeval_files(case / 'run', cfg, out)
    rewrite_paths(case)
    print('ppl rc', rc)


def case_circular_crash():
    """summarizer=CircularSummarizer: in 0.5.4 it always crashes (default.py:401 passes required_dataset_abbrs,
    circular.py:29 does not take it), so the only run folder has results and predictions but no summary; the CLI
    exits 1 with the traceback on the console."""
    import traceback
    from opencompass.summarizers import CircularSummarizer
    case = new_case('summarizer-crashed-no-summary')
    ts = '20261201_134500'
    r = run_dir(case, ts)
    m = model_cfg()
    qa, mcq = qa_ds(), mcq_ds()
    for src, d in ((QA_RUN, 'tiny_qa'), (MCQ_RUN, 'tiny_mcq')):
        copy_pred(r, src, d)
        copy_infer_log(r, src, d)
    summ = dict(type='opencompass.summarizers.CircularSummarizer', dataset_abbrs=['tiny_qa', 'tiny_mcq'],
                metric_types=['accuracy'])
    cfg = full_cfg([m], [qa, mcq], summarizer=summ)
    dump_config(r, cfg, ts, 44901)
    run_eval(r, m, qa)
    run_eval(r, m, mcq)
    try:
        summarize(r, cfg, ts, cls=CircularSummarizer, dataset_abbrs=summ['dataset_abbrs'],
                  metric_types=summ['metric_types'])
        out, code = 'summarizer did not crash?!\n', 0
    except TypeError:
        tb = traceback.format_exc().splitlines()
        k = next(i for i, line in enumerate(tb) if 'summarizers/default.py' in line)
        # the console shows the CLI's frames (`opencompass` entry point -> cli/main.py:506), not this script's
        cli = ['Traceback (most recent call last):',
               '  File "/opt/venv/bin/opencompass", line 8, in <module>',
               '    sys.exit(main())',
               '             ^^^^^^',
               '  File "/opt/venv/lib/python3.11/site-packages/opencompass/cli/main.py", line 506, in main',
               '    summarizer.summarize(time_str=cfg_time_str)']
        out, code = '\n'.join(cli + tb[k:]) + '\n', 1
    budeval_files(case / 'run', cfg, out, exit_code=code)
    rewrite_paths(case)
    print('circular exit', code)


CASES = {'cascade': case_cascade, 'llm_judge': case_llm_judge, 'needle': case_needle,
         'reuse': case_reuse_narrower, 'groups': case_groups, 'sabbr': case_summarizer_abbr,
         'nan': case_nan_inf, 'shard': case_shard, 'comma': case_abbr_comma, 'faceted': case_multi_faceted,
         'subjective': case_subjective_by_judge,
         'n_no_verdict': case_n_no_verdict, 'mtbench': case_mtbench_crlf,
         'gpass': case_gpass_sampled, 'model2': case_model_eval_crash,
         'ppl': case_ppl, 'circular': case_circular_crash}

if __name__ == '__main__':
    TMP.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[1:] or list(CASES):
        CASES[name]()
