#!/usr/bin/env bash
# The main job on the embedded default, from a clean clone: set everything up (idempotent), start the embedded stack
# (service + embedded Dapr-compatible sidecar + local OpenCompass backend + chDB + folder archive), submit one real
# evaluation of SmolLM2-135M-Instruct on the bundled `light` suite THROUGH THE PUB/SUB TOPIC, wait for its
# `completed` event and print the scores read back from ClickHouse, with a short table of per-example verdicts
# (question, answer, gold, right/wrong) read back from the stored predictions. Prints the wall time at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev]'
bash scripts/setup_opencompass.sh
eval "$(bash scripts/setup_opencompass.sh --print-env)"
export BUDEVAL_OPENCOMPASS_PYTHON BUDEVAL_MODEL_PATH

export BUDEVAL_DATA_DIR="${BUDEVAL_DATA_DIR:-$PWD/.budeval-data}"
mkdir -p "$BUDEVAL_DATA_DIR"
log="$BUDEVAL_DATA_DIR/serve.log"

rm -f "$BUDEVAL_DATA_DIR/serve.json"  # a stale one (a killed earlier serve) would look like a service
.venv/bin/budeval serve >"$log" 2>&1 &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true' EXIT

eval_id="smollm2-light-$(date -u +%Y%m%d%H%M%S)"
request="$BUDEVAL_DATA_DIR/$eval_id.json"
cat >"$request" <<JSON
{
  "eval_id": "$eval_id",
  "experiment_id": "main-job",
  "model": {"name": "smollm2-135m-instruct",
            "source": {"type": "huggingface", "path": "$BUDEVAL_MODEL_PATH", "mode": "chat"}},
  "suite": "light",
  "generation": {"max_out_len": 32, "batch_size": 4},
  "timeout_s": 3600,
  "force": true
}
JSON

# submit waits for a starting service (its serve.json names a live process) and fails within seconds when none is
# there; serve writes that file once its store and sidecar are open, so wait for it here.
for _ in $(seq 1200); do
  [ -f "$BUDEVAL_DATA_DIR/serve.json" ] && break
  kill -0 "$serve_pid" 2>/dev/null || { echo "budeval serve exited; log: $log" >&2; tail -20 "$log" >&2; exit 1; }
  sleep 0.5
done
# submit waits for the service's readiness, publishes on the request topic and follows the events topic.
.venv/bin/budeval submit "$request" --wait --timeout 1800
# chDB is one process per data directory: stop the service before this process opens the store itself.
kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true
echo
echo "Scores and per-example verdicts read back from ClickHouse:"
.venv/bin/budeval results "$eval_id" --examples 5
echo "main job wall time: $(( $(date +%s) - start )) s (log: $log)"
