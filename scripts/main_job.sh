#!/usr/bin/env bash
# The main job on the embedded default, from a clean clone: set everything up (idempotent), start the embedded stack
# (service + embedded Dapr-compatible sidecar + local OpenCompass backend + chDB + folder archive), submit one real
# evaluation of SmolLM2-135M-Instruct on the bundled `light` suite THROUGH THE PUB/SUB TOPIC, wait for its
# `completed` event and print the scores read back from ClickHouse, with a short table of per-example verdicts
# (question, answer, gold, right/wrong) read back from the stored predictions. Prints the wall time at the end.
#
#   bash scripts/main_job.sh              the model loaded by OpenCompass itself (Hugging Face model)
#   bash scripts/main_job.sh --endpoint   (or BUDEVAL_MAIN_JOB_ENDPOINT=1) the same model served by a real
#                                         OpenAI-compatible server on loopback (scripts/openai_server.sh), evaluated
#                                         through OpenCompass's API model; also prints the endpoint's usage
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
endpoint="${BUDEVAL_MAIN_JOB_ENDPOINT:-0}"
for arg in "$@"; do
  case "$arg" in
    --endpoint) endpoint=1 ;;
    *) echo "usage: $0 [--endpoint]" >&2; exit 2 ;;
  esac
done

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev]'
bash scripts/setup_opencompass.sh
eval "$(bash scripts/setup_opencompass.sh --print-env)"
export BUDEVAL_OPENCOMPASS_PYTHON BUDEVAL_MODEL_PATH

export BUDEVAL_DATA_DIR="${BUDEVAL_DATA_DIR:-$PWD/.budeval-data}"
mkdir -p "$BUDEVAL_DATA_DIR"
log="$BUDEVAL_DATA_DIR/serve.log"

model_json="{\"name\": \"smollm2-135m-instruct\",
            \"source\": {\"type\": \"huggingface\", \"path\": \"$BUDEVAL_MODEL_PATH\", \"mode\": \"chat\"}}"
stop_server=true
if [ "$endpoint" = 1 ]; then
  # The model behind a real OpenAI-compatible server on loopback; the operator allows that network for endpoints.
  export BUDEVAL_OPENAI_STATE="${BUDEVAL_OPENAI_STATE:-$BUDEVAL_DATA_DIR/openai-server}"
  eval "$(bash scripts/openai_server.sh start | sed 's/^/export /')"
  stop_server='bash scripts/openai_server.sh stop'
  export BUDEVAL_ENDPOINT_ALLOWED_NETWORKS="${BUDEVAL_ENDPOINT_ALLOWED_NETWORKS:-127.0.0.0/8}"
  model_json="{\"name\": \"smollm2-endpoint\",
            \"source\": {\"type\": \"openai\", \"base_url\": \"$BUDEVAL_OPENAI_BASE_URL\",
                       \"model\": \"$BUDEVAL_OPENAI_MODEL\", \"tokenizer_path\": \"$BUDEVAL_MODEL_PATH\"}}"
fi

.venv/bin/budeval serve >"$log" 2>&1 &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; $stop_server' EXIT

eval_id="smollm2-light-$(date -u +%Y%m%d%H%M%S)"
if [ "$endpoint" = 1 ]; then eval_id="smollm2-endpoint-light-$(date -u +%Y%m%d%H%M%S)"; fi
request="$BUDEVAL_DATA_DIR/$eval_id.json"
cat >"$request" <<JSON
{
  "eval_id": "$eval_id",
  "experiment_id": "main-job",
  "model": $model_json,
  "suite": "light",
  "generation": {"max_out_len": 32, "batch_size": 4},
  "timeout_s": 3600,
  "force": true
}
JSON

# submit waits for the service's readiness, publishes on the request topic and follows the events topic.
.venv/bin/budeval submit "$request" --wait --timeout 1800
# chDB is one process per data directory: stop the service before this process opens the store itself.
kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true
echo
echo "Scores and per-example verdicts read back from ClickHouse:"
.venv/bin/budeval results "$eval_id" --examples 5
echo "main job wall time: $(( $(date +%s) - start )) s (log: $log)"
