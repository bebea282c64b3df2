#!/usr/bin/env bash
# One evaluation end to end on a real single-node cluster, built and started by the project's scripts:
#   etcd + kube-apiserver + controller manager (scripts/kube/apiserver.sh), containerd + runc + CNI bridge + kubelet +
#   kube-scheduler + kube-proxy (scripts/kube/node.sh), the runner and service images without Docker
#   (scripts/kube/images.sh), SeaweedFS S3 on the host (scripts/s3_server.sh, reachable from pods), then
#   `helm install` of charts/budeval with values for this node, and scripts/cluster_e2e.py: the bundled `light` suite
#   with SmolLM2-135M-Instruct from the results volume, published on the request topic through the service pod's
#   sidecar container (budeval's Dapr-compatible sidecar where the Dapr injector puts daprd), checked in ClickHouse (chDB on the volume), the S3 archive, the runner pods' ServiceAccount and
#   the Jobs' cleanup. Last line: cluster_e2e=ok completed_p50_s=<Job complete -> completed event>.
#
#   scripts/cluster_e2e.sh            # everything it started is stopped by PID at the end (also on failure)
#   BUDEVAL_KEEP_CLUSTER=1 scripts/cluster_e2e.sh   # leave the cluster, release and S3 running to look around
#
# State and ports: the scripts' variables (BUDEVAL_KUBE_STATE, BUDEVAL_KUBE_PORT, BUDEVAL_ETCD_PORT,
# BUDEVAL_KUBE_CM_PORT, BUDEVAL_NODE_STATE, BUDEVAL_S3_STATE). The model: ${BUDEVAL_CACHE}/models/SmolLM2-135M-Instruct
# (scripts/setup_opencompass.sh) or BUDEVAL_E2E_MODEL.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
KUBE="$REPO/scripts/kube"
CACHE_ROOT="${BUDEVAL_CACHE:-$HOME/.cache/budeval}"
NODE_STATE="${BUDEVAL_NODE_STATE:-/tmp/budeval-node}"
export BUDEVAL_NODE_STATE="$NODE_STATE"
NS=budeval-e2e
RELEASE=budeval
MODEL="${BUDEVAL_E2E_MODEL:-$CACHE_ROOT/models/SmolLM2-135M-Instruct}"
PY="$REPO/.venv/bin/python"
T0=$SECONDS
RESULT="$NODE_STATE.e2e-result"
rm -f "$RESULT"

log() { echo "cluster_e2e.sh: [$((SECONDS - T0)) s] $*" >&2; }
die() { log "error: $*"; exit 1; }

[ -x "$PY" ] || die "no .venv (python3 -m venv .venv && .venv/bin/pip install -e '.[dev]')"
# scripts/setup_opencompass.sh (idempotent, cached) installs the OpenCompass venv the runner image carries and the model.
[ -n "${BUDEVAL_E2E_MODEL:-}" ] || scripts/setup_opencompass.sh >&2
[ -f "$MODEL/config.json" ] || die "no model at $MODEL (set BUDEVAL_E2E_MODEL)"

api_was_running=0; node_was_running=0; s3_was_running=0
"$KUBE/apiserver.sh" status >/dev/null 2>&1 && api_was_running=1
"$KUBE/node.sh" status >/dev/null 2>&1 && node_was_running=1
scripts/s3_server.sh status >/dev/null 2>&1 && s3_was_running=1

cleanup() {
  local rc=$?
  if [ -n "${BUDEVAL_KEEP_CLUSTER:-}" ]; then
    log "leaving the cluster running (BUDEVAL_KEEP_CLUSTER)"
    [ "$rc" = 0 ] && [ -f "$RESULT" ] && tail -1 "$RESULT"
    exit "$rc"
  fi
  [ "$node_was_running" = 1 ] || "$KUBE/node.sh" stop || true
  [ "$api_was_running" = 1 ] || "$KUBE/apiserver.sh" stop || true
  [ "$s3_was_running" = 1 ] || scripts/s3_server.sh stop || true
  # The result line last, after everything has stopped.
  [ "$rc" = 0 ] && [ -f "$RESULT" ] && tail -1 "$RESULT"
  exit "$rc"
}
trap cleanup EXIT

log "building (cached): kubelet, scheduler, proxy, pause image; runner and service images"
"$KUBE/node.sh" build
"$KUBE/images.sh" runner
"$KUBE/images.sh" service
log "built"

BUDEVAL_S3_BIND=0.0.0.0 scripts/s3_server.sh start >"$NODE_STATE.s3.env" 2>/dev/null \
  || die "scripts/s3_server.sh start failed"
# shellcheck disable=SC1090
. "$NODE_STATE.s3.env"
rm -f "$NODE_STATE.s3.env"
S3_PORT="${BUDEVAL_S3_ENDPOINT##*:}"

"$KUBE/node.sh" start
eval "$("$KUBE/node.sh" env | tr ' ' '\n' | sed 's/^/export /')"
"$KUBE/images.sh" import runner service
GATEWAY="$("$PY" -c 'import os, ipaddress; n = ipaddress.ip_network(os.environ.get("BUDEVAL_POD_CIDR", "10.244.0.0/24"));
print(n.network_address + 1)')"
log "cluster up (pods reach the host at $GATEWAY)"

# A fresh results volume per run (chDB, OpenCompass output, the model under _models).
VOLUME="$NODE_STATE/volumes/results"
if [ "$node_was_running" = 0 ]; then rm -rf "$VOLUME"; fi
"$PY" scripts/cluster_e2e.py prepare --kubeconfig "$KUBECONFIG" --namespace "$NS" --volume "$VOLUME" --model "$MODEL"

# The stock datasets' folder (COMPASS_DATA_CACHE layout), read-only in the service and the runner pods.
DATASETS="$NODE_STATE/volumes/datasets"
mkdir -p "$DATASETS"
chmod 755 "$DATASETS"

VALUES="$NODE_STATE/e2e-values.yaml"
cat >"$VALUES" <<EOF
image: {repository: budeval, tag: "0.1.0", pullPolicy: Never}
runner:
  image: {repository: opencompass-runner, tag: "0.5.4-cpu"}
# No daprd here: budeval's Dapr-compatible sidecar as the pod's daprd container (the injector's pod shape).
dapr: {enabled: false, embeddedSidecar: {mode: container}}
# chDB on the results volume (the chart then renders no migration hook: the service migrates it when it starts).
clickhouse: {dsn: "chdb:///var/lib/budeval/results/_clickhouse"}
s3:
  endpoint: "http://$GATEWAY:$S3_PORT"
  bucket: budeval-archive
  accessKey: "$BUDEVAL_S3_ACCESS_KEY"
  secretKey: "$BUDEVAL_S3_SECRET_KEY"
results: {existingClaim: budeval-results}
datasets: {hostPath: "$DATASETS"}
EOF
HELM="$(scripts/helm.sh --path)"
"$HELM" uninstall "$RELEASE" --namespace "$NS" --kubeconfig "$KUBECONFIG" >/dev/null 2>&1 || true
log "helm install"
"$HELM" install "$RELEASE" charts/budeval --namespace "$NS" --kubeconfig "$KUBECONFIG" -f "$VALUES" \
  --wait --timeout 5m >/dev/null
log "release installed; service pod ready"

EVAL_ID="e2e-$(date +%s)"
"$PY" scripts/cluster_e2e.py run --kubeconfig "$KUBECONFIG" --namespace "$NS" --release "$RELEASE" \
  --eval-id "$EVAL_ID" --s3-endpoint "http://127.0.0.1:$S3_PORT" --s3-access-key "$BUDEVAL_S3_ACCESS_KEY" \
  --s3-secret-key "$BUDEVAL_S3_SECRET_KEY" >"$RESULT"
log "evaluation checked in $((SECONDS - T0)) s; stopping what this script started"
