#!/usr/bin/env bash
# A real single Kubernetes node next to scripts/kube/apiserver.sh: containerd + runc + CNI bridge (Debian packages),
# kubelet, kube-scheduler and kube-proxy v1.20.2 compiled from the same Debian source tree as the apiserver.
#
#   scripts/kube/node.sh build    # apt-get the runtime packages; compile kubelet, kube-scheduler, kube-proxy (cached);
#                                 # build the pause image (scripts/kube/images.sh pause)
#   scripts/kube/node.sh start    # start the apiserver (bound to 0.0.0.0) if needed, containerd, kubelet, scheduler,
#                                 # kube-proxy; wait for the Node to be Ready; advertise the fake GPUs
#   scripts/kube/node.sh stop     # stop by PID, kill the node's containers, unmount what was mounted under the state
#   scripts/kube/node.sh status   # exit 0 when every process runs and the Node is Ready
#   scripts/kube/node.sh env      # KUBECONFIG=... CONTAINERD_ADDRESS=... NODE_NAME=...
#   scripts/kube/node.sh ctr ARGS # ctr against this node's containerd (namespace k8s.io), e.g. `ctr images ls`
#
# Binaries: ${BUDEVAL_CACHE:-~/.cache/budeval}/kube-node/bin (with a build-id). Runtime state:
# ${BUDEVAL_NODE_STATE:-/tmp/budeval-node} (containerd root/state/socket, kubelet root dir, CNI config, pids, logs).
# Ports (loopback): kubelet BUDEVAL_KUBELET_PORT (default BUDEVAL_KUBE_PORT + 2), its healthz +1, kube-proxy
# healthz +2 and metrics +3. BUDEVAL_NODE_NAME (budeval-node), BUDEVAL_POD_CIDR (a /24, 10.244.0.0/24),
# BUDEVAL_NODE_BRIDGE (budeval0), BUDEVAL_NODE_GPUS (8: the fake nvidia.com/gpu capacity).
# Only one node per machine: kubelet owns /sys/fs/cgroup/*/kubepods and /var/log/pods.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
K8S_VERSION=1.20.2
CACHE_ROOT="${BUDEVAL_CACHE:-$HOME/.cache/budeval}"
SRC="$CACHE_ROOT/kube/build/src"
NCACHE="$CACHE_ROOT/kube-node"
BIN="$NCACHE/bin"
KSTATE="${BUDEVAL_KUBE_STATE:-/tmp/budeval-kube}"
STATE="${BUDEVAL_NODE_STATE:-/tmp/budeval-node}"
API_PORT="${BUDEVAL_KUBE_PORT:-16443}"
KUBELET_PORT="${BUDEVAL_KUBELET_PORT:-$((API_PORT + 2))}"
NODE_NAME="${BUDEVAL_NODE_NAME:-budeval-node}"
POD_CIDR="${BUDEVAL_POD_CIDR:-10.244.0.0/24}"
GATEWAY="${POD_CIDR%.*}.1"
BRIDGE="${BUDEVAL_NODE_BRIDGE:-budeval0}"
GPUS="${BUDEVAL_NODE_GPUS:-8}"
SOCK="$STATE/containerd/containerd.sock"
BUILD_ID="v$K8S_VERSION+reflect2-1.0.2+node1"

log() { echo "node.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

have_binaries() {
  [ -x "$BIN/kubelet" ] && [ -x "$BIN/kube-scheduler" ] && [ -x "$BIN/kube-proxy" ] \
    && [ "$(cat "$BIN/build-id" 2>/dev/null)" = "$BUILD_ID" ]
}

apt_install() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v gcc >/dev/null || missing+=(gcc libc6-dev)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
  fi
}

build() {
  apt_install
  if have_binaries; then
    log "binaries cached in $BIN"
  else
    # The lock apiserver.sh's build takes: both compile in the same source tree.
    mkdir -p "$CACHE_ROOT/kube"
    ( flock 9; build_locked ) 9>>"$CACHE_ROOT/kube/.build.lock"
  fi
  "$HERE/images.sh" pause
}

build_locked() {
  if have_binaries; then log "binaries built by another process meanwhile: $BIN"; return 0; fi
  [ -f "$SRC/.reflect2" ] || "$HERE/apiserver.sh" unpack
  mkdir -p "$BIN" "$NCACHE/build"
  log "compiling kubelet, kube-scheduler and kube-proxy (several minutes)"
  local start=$SECONDS
  # Only kubelet, kube-scheduler and kube-proxy: the apiserver's generated code is already in the tree.
  (cd "$SRC" && CGO_ENABLED=0 GOFLAGS= GOPATH="$NCACHE/build/gopath" GOCACHE="$NCACHE/build/gocache" \
      KUBE_GIT_VERSION="v$K8S_VERSION" KUBE_GIT_TREE_STATE=clean \
      make WHAT="cmd/kubelet cmd/kube-scheduler cmd/kube-proxy" >"$NCACHE/build/make.log" 2>&1) \
    || { tail -30 "$NCACHE/build/make.log" >&2; die "build failed (log: $NCACHE/build/make.log)"; }
  local out; out="$(find "$SRC/_output" -type f -name kubelet -path '*bin*' | head -1)"
  [ -n "$out" ] || die "kubelet binary not found under $SRC/_output"
  install -m 0755 "$out" "$(dirname "$out")/kube-scheduler" "$(dirname "$out")/kube-proxy" "$BIN/"
  echo "$BUILD_ID" >"$BIN/build-id"
  log "built in $((SECONDS - start)) s: $("$BIN/kubelet" --version)"
}

# pid_alive NAME, stop_one NAME: scripts/kube/pids.sh
# shellcheck source=pids.sh
source "$(dirname "${BASH_SOURCE[0]}")/pids.sh"

launch() { # name command...
  local name="$1"; shift
  setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
}

api() { # method path [content-type data]
  local args=(-sf --max-time 10 --cacert "$KSTATE/pki/ca.crt" -H "Authorization: Bearer $(cat "$KSTATE/admin.token")"
    -X "$1")
  [ $# -ge 4 ] && args+=(-H "Content-Type: $3" --data-binary "$4")
  curl "${args[@]}" "https://127.0.0.1:$API_PORT$2"
}

ctr_() { ctr --address "$SOCK" -n k8s.io "$@"; }

write_containerd_config() {
  mkdir -p "$STATE/containerd" "$STATE/cni/conf" "$STATE/cni/ipam"
  cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.2"
  netns_mounts_under_state_dir = true
  # Without CAP_SYS_RESOURCE (this VM's root lacks it) runc cannot lower oom_score_adj below containerd's own (the
  # sandbox asks for -998): clamp instead of failing every pod with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/conf"
EOF
  cat >"$STATE/cni/conf/10-budeval.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "budeval", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$STATE/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
}

start_containerd() {
  pid_alive containerd && return 0
  write_containerd_config
  run_containerd
  "$HERE/images.sh" import pause
}

run_containerd() {
  launch containerd containerd --config "$STATE/containerd/config.toml"
  local i
  for i in $(seq 1 100); do
    ctr --address "$SOCK" version >/dev/null 2>&1 && break
    pid_alive containerd || { tail -20 "$STATE/logs/containerd.log" >&2; die "containerd exited"; }
    sleep 0.2
  done
  ctr --address "$SOCK" version >/dev/null 2>&1 || die "containerd not answering (log: $STATE/logs/containerd.log)"
}

# A ServiceAccount with cluster-admin for the node's components (the apiserver has static tokens and RBAC only).
node_kubeconfig() {
  # Written afresh on every start: a kubeconfig kept from an earlier start may name another apiserver port, state
  # folder or CA (a different BUDEVAL_KUBE_PORT / BUDEVAL_KUBE_STATE, a regenerated CA), and the kubelet would retry
  # it until the Ready timeout (seen in CI: "connection refused" / "x509: certificate signed by unknown authority").
  local kc="$STATE/node.kubeconfig"
  api POST /api/v1/namespaces/kube-system/serviceaccounts application/json \
    '{"metadata":{"name":"budeval-node"}}' >/dev/null 2>&1 || true
  api POST /apis/rbac.authorization.k8s.io/v1/clusterrolebindings application/json \
    '{"metadata":{"name":"budeval-node"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole",
      "name":"cluster-admin"},"subjects":[{"kind":"ServiceAccount","name":"budeval-node",
      "namespace":"kube-system"}]}' >/dev/null 2>&1 || true
  local token="" i
  for i in $(seq 1 100); do
    token="$(api GET /api/v1/namespaces/kube-system/secrets 2>/dev/null | python3 -c '
import base64, json, sys
for s in json.load(sys.stdin)["items"]:
    a = s["metadata"].get("annotations") or {}
    if s["type"] == "kubernetes.io/service-account-token" and a.get("kubernetes.io/service-account.name") == "budeval-node":
        print(base64.b64decode(s["data"]["token"]).decode()); break')" || true
    [ -n "$token" ] && break
    sleep 0.2
  done
  [ -n "$token" ] || die "no token for ServiceAccount kube-system/budeval-node (is the controller manager running?)"
  (umask 077; cat >"$kc" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: budeval-test
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$KSTATE/pki/ca.crt"}
users:
- name: budeval-node
  user: {token: "$token"}
contexts:
- name: budeval-test
  context: {cluster: budeval-test, user: budeval-node}
current-context: budeval-test
KCFG
  )
}

# The kubelet refuses a loopback node IP, so the Node's InternalIP is the CNI bridge's gateway address: the bridge
# is created here (the bridge plugin adopts it) and the kubelet serves on that address with a certificate for it,
# signed by the apiserver script's CA (the apiserver verifies kubelets against it).
make_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  # Read whole, then matched: `ip ... | grep -q` under pipefail fails when grep exits before ip has written (SIGPIPE),
  # and the address would be added twice ("Address already assigned").
  local addrs; addrs="$(ip -4 addr show dev "$BRIDGE")"
  [[ "$addrs" == *"inet $GATEWAY/"* ]] || ip addr add "$GATEWAY/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

kubelet_cert() {
  local d="$STATE/pki" ca="$KSTATE/pki"
  [ -f "$d/kubelet.crt" ] && [ "$(cat "$d/.for" 2>/dev/null)" = "$GATEWAY $NODE_NAME $(sha256sum <"$ca/ca.crt")" ] && return 0
  mkdir -p "$d" && chmod 700 "$d"
  openssl req -newkey rsa:2048 -nodes -keyout "$d/kubelet.key" -out "$d/kubelet.csr" -subj "/CN=$NODE_NAME" \
    2>/dev/null
  printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:%s,IP:127.0.0.1,DNS:%s\n' \
    "$GATEWAY" "$NODE_NAME" >"$d/kubelet.ext"
  openssl x509 -req -in "$d/kubelet.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial \
    -CAserial "$d/ca.srl" -out "$d/kubelet.crt" -days 3650 -extfile "$d/kubelet.ext" 2>/dev/null
  rm -f "$d/kubelet.csr" "$d/kubelet.ext"
  chmod 600 "$d/kubelet.key"
  echo "$GATEWAY $NODE_NAME $(sha256sum <"$ca/ca.crt")" >"$d/.for"
}

start_kubelet() {
  pid_alive kubelet && return 0
  local p="$KSTATE/pki"
  mkdir -p "$STATE/kubelet"
  make_bridge
  kubelet_cert
  cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $GATEWAY
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $((KUBELET_PORT + 1))
tlsCertFile: $STATE/pki/kubelet.crt
tlsPrivateKeyFile: $STATE/pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $p/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
podPidsLimit: 4096
maxPods: 30
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%", nodefs.inodesFree: "2%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
EOF
  launch kubelet "$BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/node.kubeconfig" \
    --root-dir "$STATE/kubelet" --cert-dir "$STATE/kubelet/pki" --hostname-override "$NODE_NAME" \
    --node-ip "$GATEWAY" --container-runtime remote --container-runtime-endpoint "unix://$SOCK" \
    --runtime-request-timeout 10m --oom-score-adj 0 --v 1
}

start_scheduler() {
  pid_alive kube-scheduler && return 0
  launch kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$STATE/node.kubeconfig" --leader-elect=false \
    --port 0 --secure-port 0 --profiling=false --v 1
}

# apiserver.sh's controller manager runs only what the fake-kubelet tests need; a node that runs Deployments (the
# chart's service) and Services also needs these, in a second controller manager owned by this script
# (endpointslicemirroring: kube-proxy reads EndpointSlices, and the kubernetes Service has hand-written Endpoints).
start_workload_controllers() {
  pid_alive workload-controllers && return 0
  launch workload-controllers "$CACHE_ROOT/kube/bin/kube-controller-manager" \
    --kubeconfig "$STATE/node.kubeconfig" \
    --controllers deployment,replicaset,endpoint,endpointslice,endpointslicemirroring,statefulset \
    --port 0 --secure-port 0 --leader-elect=false --kube-api-qps 100 --kube-api-burst 200 --profiling=false --v 1
}

start_proxy() {
  pid_alive kube-proxy && return 0
  launch kube-proxy "$BIN/kube-proxy" --kubeconfig "$STATE/node.kubeconfig" --proxy-mode iptables \
    --hostname-override "$NODE_NAME" --cluster-cidr "$POD_CIDR" --conntrack-max-per-core 0 --oom-score-adj 0 \
    --healthz-bind-address "127.0.0.1:$((KUBELET_PORT + 2))" \
    --metrics-bind-address "127.0.0.1:$((KUBELET_PORT + 3))" --v 1
}

# The apiserver runs with --endpoint-reconciler-type=none: point the `kubernetes` Service (10.96.0.1:443, which
# in-cluster clients use) at the apiserver through the bridge's gateway address, where kube-proxy forwards it.
kubernetes_endpoints() {
  local body
  body="{\"apiVersion\":\"v1\",\"kind\":\"Endpoints\",\"metadata\":{\"name\":\"kubernetes\",\"namespace\":\"default\"},
    \"subsets\":[{\"addresses\":[{\"ip\":\"$GATEWAY\"}],\"ports\":[{\"name\":\"https\",\"port\":$API_PORT,
    \"protocol\":\"TCP\"}]}]}"
  api PUT /api/v1/namespaces/default/endpoints/kubernetes application/json "$body" >/dev/null 2>&1 \
    || api POST /api/v1/namespaces/default/endpoints application/json "$body" >/dev/null \
    || die "could not write the default/kubernetes Endpoints"
}

node_ready() {
  api GET "/api/v1/nodes/$NODE_NAME" 2>/dev/null | python3 -c '
import json, sys
n = json.load(sys.stdin)
sys.exit(0 if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", [])) else 1)' \
    2>/dev/null
}

# The kubelet registers with the node.kubernetes.io/not-ready taint, which the node lifecycle controller lifts
# once the Node is Ready; apiserver.sh does not run that controller (the fake kubelet's Nodes post no heartbeats),
# so the taint is lifted here.
untaint() {
  local taints
  taints="$(api GET "/api/v1/nodes/$NODE_NAME" | python3 -c '
import json, sys
t = json.load(sys.stdin)["spec"].get("taints") or []
print(json.dumps([x for x in t if x["key"] != "node.kubernetes.io/not-ready"]))')"
  api PATCH "/api/v1/nodes/$NODE_NAME" application/json-patch+json \
    "[{\"op\":\"add\",\"path\":\"/spec/taints\",\"value\":$taints}]" >/dev/null \
    || die "could not lift the not-ready taint of Node $NODE_NAME"
}

# The documented way to advertise an extended resource: a JSON patch on the Node's status subresource.
advertise_gpus() {
  api PATCH "/api/v1/nodes/$NODE_NAME/status" application/json-patch+json \
    "[{\"op\":\"add\",\"path\":\"/status/capacity/nvidia.com~1gpu\",\"value\":\"$GPUS\"}]" >/dev/null \
    || die "could not patch nvidia.com/gpu onto Node $NODE_NAME"
  # The kubelet copies capacity to allocatable on its next status sync (10 s); one re-registering an existing Node
  # first zeroes its extended resources. Wait until the scheduler can see the GPUs, re-patching once per sync.
  local i
  for i in $(seq 1 90); do
    [ "$(api GET "/api/v1/nodes/$NODE_NAME" | python3 -c 'import json, sys
print(json.load(sys.stdin)["status"].get("allocatable", {}).get("nvidia.com/gpu", ""))')" = "$GPUS" ] && return 0
    if [ $((i % 20)) = 0 ]; then
      api PATCH "/api/v1/nodes/$NODE_NAME/status" application/json-patch+json \
        "[{\"op\":\"add\",\"path\":\"/status/capacity/nvidia.com~1gpu\",\"value\":\"$GPUS\"}]" >/dev/null || true
    fi
    sleep 0.5
  done
  die "Node $NODE_NAME does not show $GPUS allocatable nvidia.com/gpu after 45 s"
}

# What the running node was started with, kept in the state folder: `stop` cleans up that Node object and bridge
# whatever the environment says then, and a start under another name removes the Node an unstopped start left (no
# node lifecycle controller runs here, so it would stay Ready and keep attracting pods that never run).
remember_start() {
  local old=""
  [ -f "$STATE/node.started" ] && old="$(sed -n 's/^NODE_NAME=//p' "$STATE/node.started")"
  if [ -n "$old" ] && [ "$old" != "$NODE_NAME" ] && ! pid_alive kubelet; then
    log "removing Node $old left by an earlier start of this state folder"
    api DELETE "/api/v1/nodes/$old" >/dev/null 2>&1 || true
  fi
  printf 'NODE_NAME=%s\nBRIDGE=%s\n' "$NODE_NAME" "$BRIDGE" >"$STATE/node.started"
}

recall_start() {
  [ -f "$STATE/node.started" ] || return 0
  local v
  v="$(sed -n 's/^NODE_NAME=//p' "$STATE/node.started")"; [ -z "$v" ] || NODE_NAME="$v"
  v="$(sed -n 's/^BRIDGE=//p' "$STATE/node.started")"; [ -z "$v" ] || BRIDGE="$v"
}

start() {
  have_binaries || build
  [ -f "$NCACHE/images/pause.tar" ] || "$HERE/images.sh" pause
  mkdir -p "$STATE/logs" && chmod 700 "$STATE"
  BUDEVAL_KUBE_BIND_ADDRESS="${BUDEVAL_KUBE_BIND_ADDRESS:-0.0.0.0}" "$HERE/apiserver.sh" start
  local listening; listening="$(ss -ltn "sport = :$API_PORT")"
  if [[ "$listening" == *"127.0.0.1:$API_PORT"* ]]; then
    # Started earlier for the fake-kubelet tests (loopback only): pods could not reach it through the kubernetes
    # Service. Restarted on all addresses; its state (etcd, certificates, tokens) stays, so clients keep working.
    log "the apiserver listens on 127.0.0.1 only: restarting it on 0.0.0.0 so that pods reach it"
    BUDEVAL_KUBE_BIND_ADDRESS=0.0.0.0 "$HERE/apiserver.sh" restart
  fi
  start_containerd
  node_kubeconfig
  remember_start
  start_kubelet
  start_scheduler
  start_workload_controllers
  start_proxy
  kubernetes_endpoints
  local i
  for i in $(seq 1 300); do
    node_ready && break
    pid_alive kubelet || { tail -20 "$STATE/logs/kubelet.log" >&2; die "kubelet exited"; }
    sleep 0.5
  done
  node_ready || { tail -20 "$STATE/logs/kubelet.log" >&2; die "Node $NODE_NAME not Ready after 150 s"; }
  untaint
  advertise_gpus
  for name in kube-scheduler kube-proxy workload-controllers containerd; do
    pid_alive "$name" || { tail -20 "$STATE/logs/$name.log" >&2; die "$name exited"; }
  done
  log "node $NODE_NAME ready ($GPUS fake nvidia.com/gpu; $(env_line))"
}


# A container of this containerd still running: the init.pid its shim wrote in the task state (a killed containerd
# leaves its shims and their containers running).
containers_left() {
  local f
  for f in "$STATE"/containerd/state/io.containerd.runtime.v2.task/*/*/init.pid; do
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && return 0
  done
  return 1
}

# Every container of this containerd: kill its task (the shim then exits), delete it. When containerd itself is gone
# (kill -9, OOM) but its shims are not, a containerd on the same root and state is started first: it reconnects to
# the shims, so their containers are killed here and not left running with the rootfs mounts busy.
kill_containers() {
  if ! ctr --address "$SOCK" version >/dev/null 2>&1; then
    containers_left || return 0
    log "containerd is gone but its shims are not: starting it again to kill their containers"
    [ -f "$STATE/containerd/config.toml" ] || write_containerd_config
    run_containerd
  fi
  local id
  for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
  sleep 1
  for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
  for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
}

unmount_state() {
  local m
  findmnt -rn -o TARGET | awk -v s="$STATE/" 'index($0, s) == 1' | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
  done
}

# Pods killed above were never torn down through CNI (no DEL): the bridge plugin's masquerade chains (CNI-..., their
# POSTROUTING rules commented `name: "budeval" id: "..."`) and host-local's IP reservations would stay, and after
# enough runs the /24 is exhausted. Every pod of this node is gone here, so all of them go.
cni_cleanup() {
  local rule chain
  # (the `|| true` after the loop: under `set -eo pipefail` a grep that finds nothing would end `stop` right here,
  # leaving the node object and the bridge behind)
  iptables -t nat -S POSTROUTING 2>/dev/null | grep -F 'name: \"budeval\"' | while read -r rule; do
    chain="$(echo "$rule" | sed -n 's/.* -j \(CNI-[0-9a-f]*\).*/\1/p')"
    eval "iptables -t nat ${rule/-A /-D }" 2>/dev/null || log "warning: could not delete nat rule: $rule"
    if [ -n "$chain" ]; then
      iptables -t nat -F "$chain" 2>/dev/null || true
      iptables -t nat -X "$chain" 2>/dev/null || true
    fi
  done || true
  rm -rf "$STATE/cni/ipam"
}

# The chains the kubelet makes for itself (KUBE-FIREWALL with its INPUT/OUTPUT jumps, KUBE-MARK-DROP/-MASQ, the
# KUBE-KUBELET-CANARY chains) and kube-proxy's canaries, which `kube-proxy --cleanup` leaves: every KUBE- chain of the
# filter, nat and mangle tables and the built-in chains' jumps to them. Made again by the next start. Left alone while
# another kubelet runs on this host (its chains have the same names).
kube_chains_cleanup() {
  if pgrep -x kubelet >/dev/null 2>&1; then log "another kubelet runs on this host: its iptables chains stay"; return 0; fi
  local table rule chain chains
  for table in filter nat mangle; do
    iptables -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' | while read -r rule; do
      eval "iptables -t $table ${rule/-A /-D }" 2>/dev/null || log "warning: could not delete $table rule: $rule"
    done || true
    chains="$(iptables -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[A-Za-z0-9-]*\)$/\1/p')" || true
    for chain in $chains; do iptables -t "$table" -F "$chain" 2>/dev/null || true; done
    for chain in $chains; do
      iptables -t "$table" -X "$chain" 2>/dev/null || log "warning: could not delete $table chain $chain"
    done
  done
}

stop() {
  recall_start
  stop_one workload-controllers
  stop_one kube-scheduler
  stop_one kubelet
  stop_one kube-proxy
  [ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  kill_containers
  stop_one containerd
  unmount_state
  cni_cleanup
  kube_chains_cleanup
  # A later start must not see this kubelet's stale Ready condition.
  [ -f "$KSTATE/admin.token" ] && api DELETE "/api/v1/nodes/$NODE_NAME" >/dev/null 2>&1 || true
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE" 2>/dev/null || true
  rm -f "$STATE/node.started"
}

env_line() {
  echo "KUBECONFIG=$KSTATE/admin.kubeconfig CONTAINERD_ADDRESS=$SOCK NODE_NAME=$NODE_NAME"
}

status() {
  local name rc=0
  for name in containerd kubelet kube-scheduler kube-proxy workload-controllers; do
    if pid_alive "$name"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"
    else echo "$name: stopped"; rc=1; fi
  done
  if node_ready; then echo "node $NODE_NAME: Ready"; else echo "node $NODE_NAME: not ready"; rc=1; fi
  return "$rc"
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  env) env_line ;;
  status) status ;;
  ctr) shift; ctr_ "$@" ;;
  *) echo "usage: $0 build|start|stop|restart|env|status|ctr ARGS" >&2; exit 2 ;;
esac
