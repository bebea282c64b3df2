#!/usr/bin/env bash
# Builds (once, cached) and runs a real etcd + kube-apiserver + kube-controller-manager v1.20.2 on loopback for tests.
#
#   scripts/kube/apiserver.sh unpack   # fetch and unpack the source package only (node.sh builds from it too)
#   scripts/kube/apiserver.sh build    # compile the two binaries from Debian's kubernetes source package (cached)
#   scripts/kube/apiserver.sh start    # build if needed, start etcd, apiserver, controller manager; wait for /readyz
#   scripts/kube/apiserver.sh stop     # stop the three processes by PID
#   scripts/kube/apiserver.sh env      # print KUBECONFIG=<admin kubeconfig>
#   scripts/kube/apiserver.sh status   # exit 0 when the apiserver answers /readyz
#
# Binaries: ${BUDEVAL_CACHE:-~/.cache/budeval}/kube/bin. Runtime state (etcd data, certs, tokens, pids, logs):
# ${BUDEVAL_KUBE_STATE:-/tmp/budeval-kube}. Ports: BUDEVAL_KUBE_PORT (apiserver, default 16443), BUDEVAL_ETCD_PORT
# (default 12379). BUDEVAL_KUBE_BIND_ADDRESS (default 127.0.0.1; node.sh uses 0.0.0.0). The kubelet client
# certificate and CA (for a test kubelet serving pods/log) live in the state dir.
set -euo pipefail

K8S_VERSION=1.20.2
CACHE="${BUDEVAL_CACHE:-$HOME/.cache/budeval}/kube"
BIN="$CACHE/bin"
STATE="${BUDEVAL_KUBE_STATE:-/tmp/budeval-kube}"
API_PORT="${BUDEVAL_KUBE_PORT:-16443}"
ETCD_PORT="${BUDEVAL_ETCD_PORT:-12379}"
ETCD_PEER_PORT="$((ETCD_PORT + 1))"
CM_PORT="${BUDEVAL_KUBE_CM_PORT:-$((API_PORT + 1))}"
# 0.0.0.0 lets pods of a real node (scripts/kube/node.sh) reach the apiserver through the bridge's gateway address.
BIND_ADDRESS="${BUDEVAL_KUBE_BIND_ADDRESS:-127.0.0.1}"

# Go >= 1.18 crashes (SIGSEGV in mapiternext) in code built with the vendored reflect2 v1.0.1; 1.0.2 fixed that.
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2

log() { echo "apiserver.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Bumped whenever the build recipe changes, so that cached binaries from an older recipe are rebuilt.
BUILD_ID="v$K8S_VERSION+reflect2-1.0.2"

have_binaries() {
  [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] \
    && [ "$(cat "$BIN/build-id" 2>/dev/null)" = "$BUILD_ID" ]
}

apt_install() {
  local missing=()
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v go >/dev/null || missing+=(golang-go)
  command -v rsync >/dev/null || missing+=(rsync)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
  [ -d "$REFLECT2_SRC" ] || missing+=(golang-github-modern-go-reflect2-dev)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Writes one-line deb-src entries for the mirrors and suites of the machine's deb822 (or one-line) sources.
write_src_list() {
  local out="$1" f
  : >"$out"
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v out="$out" '
      function flush() { if (uris != "" && suites != "") { n = split(uris, u, " "); m = split(suites, s, " ");
          for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
            printf "deb-src %s%s %s %s\n", (key != "" ? "[signed-by=" key "] " : ""), u[i], s[j], comps >> out }
        uris = ""; suites = ""; comps = ""; key = "" }
      /^[ \t]*$/ { flush(); next }
      /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
      /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
      /^Components:/ { sub(/^Components:[ \t]*/, ""); comps = $0 }
      /^Signed-By:/ { sub(/^Signed-By:[ \t]*/, ""); key = $0 }
      END { flush() }' "$f"
  done
  if [ -f /etc/apt/sources.list ]; then
    sed -n 's/^deb \(.*\)$/deb-src \1/p' /etc/apt/sources.list >>"$out"
  fi
  [ -s "$out" ] || die "no Debian apt sources found to derive deb-src entries from"
}

# Fetches Debian's kubernetes source package and unpacks it (patched, reflect2 replaced) into $CACHE/build/src.
# scripts/kube/node.sh compiles kubelet, kube-scheduler and kube-proxy from the same tree.
unpack() {
  apt_install
  local work="$CACHE/build"
  mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$BIN"
  write_src_list "$work/apt/sources.list"
  local aptopts=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache")
  if ! ls "$work"/kubernetes_*.dsc >/dev/null 2>&1; then
    log "fetching the kubernetes source package"
    apt-get "${aptopts[@]}" update -qq
    (cd "$work" && apt-get "${aptopts[@]}" source --download-only kubernetes)
  fi
  local dsc; dsc="$(ls "$work"/kubernetes_*.dsc | head -1)"
  local src="$work/src"
  if [ ! -f "$src/.patched" ]; then
    rm -rf "$src"
    log "unpacking $(basename "$dsc") (applies debian/patches)"
    dpkg-source --no-check -x "$dsc" "$src" >/dev/null
    # dpkg-source applies the quilt series for 3.0 (quilt) packages; apply by hand for any other format.
    if [ ! -d "$src/.pc" ] && [ -f "$src/debian/patches/series" ]; then
      grep -v '^\s*#' "$src/debian/patches/series" | while read -r p _; do
        [ -n "$p" ] && patch -d "$src" -p1 -s <"$src/debian/patches/$p"
      done
    fi
    touch "$src/.patched"
  fi
  if [ ! -f "$src/.reflect2" ]; then
    log "replacing vendored modern-go/reflect2 v1.0.1 with Debian's 1.0.2 (Go 1.19 compatibility)"
    local vend="$src/vendor/github.com/modern-go/reflect2"
    rm -f "$vend"/*.go "$vend"/*.s
    cp "$REFLECT2_SRC"/*.go "$vend"/
    find "$REFLECT2_SRC" -maxdepth 1 -name '*.s' -exec cp {} "$vend"/ \;
    rm -f "$vend"/*_test.go
    sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' "$src/go.mod" \
      "$src/vendor/modules.txt"
    touch "$src/.reflect2"
  fi
}

build() {
  if have_binaries; then log "binaries cached in $BIN"; return 0; fi
  # One build at a time per cache: CI, test sessions and node.sh share the source tree and the Go caches. A subshell
  # holds the lock, so the daemons `start` launches afterwards do not inherit it.
  mkdir -p "$CACHE"
  ( flock 9; build_locked ) 9>>"$CACHE/.build.lock"
}

build_locked() {
  if have_binaries; then log "binaries built by another process meanwhile: $BIN"; return 0; fi
  unpack
  local work="$CACHE/build" src="$CACHE/build/src"
  log "compiling kube-apiserver and kube-controller-manager (several minutes)"
  local start=$SECONDS
  (cd "$src" && CGO_ENABLED=0 GOFLAGS= GOPATH="$work/gopath" GOCACHE="$work/gocache" \
      KUBE_GIT_VERSION="v$K8S_VERSION" KUBE_GIT_TREE_STATE=clean \
      make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$work/make.log" 2>&1) \
    || { tail -30 "$work/make.log" >&2; die "build failed (log: $work/make.log)"; }
  local out; out="$(find "$src/_output" -type f -name kube-apiserver -path '*bin*' | head -1)"
  [ -n "$out" ] || die "kube-apiserver binary not found under $src/_output"
  install -m 0755 "$out" "$(dirname "$out")/kube-controller-manager" "$BIN/"
  echo "$BUILD_ID" >"$BIN/build-id"
  log "built in $((SECONDS - start)) s: $("$BIN/kube-apiserver" --version)"
}

# pid_alive NAME, stop_one NAME: scripts/kube/pids.sh
# shellcheck source=pids.sh
source "$(dirname "${BASH_SOURCE[0]}")/pids.sh"

admin_token() { cat "$STATE/admin.token"; }

readyz() {
  [ -f "$STATE/admin.token" ] || return 1
  curl -sf --max-time 3 --cacert "$STATE/pki/ca.crt" -H "Authorization: Bearer $(admin_token)" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# CA, apiserver serving cert, apiserver->kubelet client cert, a kubelet serving cert for test kubelets, SA keys.
make_pki() {
  local d="$STATE/pki"
  [ -f "$d/.done" ] && return 0
  mkdir -p "$d" && chmod 700 "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=budeval-test-ca" \
      2>/dev/null
    sign() { # name subject extfile-content
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 \
        -extfile "$1.ext" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    sign apiserver "/CN=kube-apiserver" "$(printf '%s\n%s\n%s' \
      'basicConstraints=CA:FALSE' 'extendedKeyUsage=serverAuth' \
      'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc')"
    sign kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$(printf '%s\n%s' \
      'basicConstraints=CA:FALSE' 'extendedKeyUsage=clientAuth')"
    sign kubelet "/CN=budeval-test-kubelet" "$(printf '%s\n%s\n%s' \
      'basicConstraints=CA:FALSE' 'extendedKeyUsage=serverAuth' 'subjectAltName=IP:127.0.0.1,DNS:localhost')"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
    touch .done
  )
}

write_kubeconfig() { # file user token
  cat >"$1" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: budeval-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $STATE/pki/ca.crt
users:
- name: $2
  user:
    token: $3
contexts:
- name: budeval-test
  context: {cluster: budeval-test, user: $2}
current-context: budeval-test
KCFG
  chmod 600 "$1"
}

make_auth() {
  if [ ! -f "$STATE/tokens.csv" ]; then
    local admin cm
    admin="$(openssl rand -hex 24)"; cm="$(openssl rand -hex 24)"
    (umask 077
      printf '%s\n' "$admin" >"$STATE/admin.token"
      printf '%s,admin,admin-uid,"system:masters"\n%s,system:kube-controller-manager,kcm-uid,"system:masters"\n' \
        "$admin" "$cm" >"$STATE/tokens.csv"
      printf '%s\n' "$cm" >"$STATE/cm.token")
  fi
  write_kubeconfig "$STATE/admin.kubeconfig" admin "$(cat "$STATE/admin.token")"
  write_kubeconfig "$STATE/controller-manager.kubeconfig" system:kube-controller-manager "$(cat "$STATE/cm.token")"
}

launch() { # name command...
  local name="$1"; shift
  setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
}

# A server of this state folder already running must be on the port asked for now: say so at once rather than wait
# for a health check on a port nothing listens on (a changed BUDEVAL_KUBE_PORT or BUDEVAL_ETCD_PORT).
on_asked_port() { # name port variable
  local was; was="$(cat "$STATE/$1.port" 2>/dev/null || true)"
  [ -z "$was" ] || [ "$was" = "$2" ] || die "the $1 of $STATE already runs on port $was, not $3=$2: stop it first \
(apiserver.sh stop with the same BUDEVAL_KUBE_STATE) or use another BUDEVAL_KUBE_STATE"
}

start_etcd() {
  if pid_alive etcd; then on_asked_port etcd "$ETCD_PORT" BUDEVAL_ETCD_PORT; return 0; fi
  port_free "$ETCD_PORT" || die "port $ETCD_PORT is taken (set BUDEVAL_ETCD_PORT)"
  launch etcd etcd --name budeval --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "budeval=http://127.0.0.1:$ETCD_PEER_PORT" \
    --quota-backend-bytes 2147483648 --auto-compaction-retention 1h
  echo "$ETCD_PORT" >"$STATE/etcd.port"
  local i
  for i in $(seq 1 100); do
    curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1 && return 0
    pid_alive etcd || { tail -20 "$STATE/logs/etcd.log" >&2; die "etcd exited"; }
    sleep 0.2
  done
  die "etcd not healthy after 20 s (log: $STATE/logs/etcd.log)"
}

start_apiserver() {
  if pid_alive kube-apiserver; then on_asked_port kube-apiserver "$API_PORT" BUDEVAL_KUBE_PORT; return 0; fi
  port_free "$API_PORT" || die "port $API_PORT is taken (set BUDEVAL_KUBE_PORT)"
  local p="$STATE/pki"
  launch kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$BIND_ADDRESS" --advertise-address 127.0.0.1 --secure-port "$API_PORT" --insecure-port 0 \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" --client-ca-file "$p/ca.crt" \
    --token-auth-file "$STATE/tokens.csv" --authorization-mode RBAC --anonymous-auth=false \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.96.0.0/16 --endpoint-reconciler-type none \
    --feature-gates TTLAfterFinished=true --allow-privileged=true \
    --kubelet-client-certificate "$p/kubelet-client.crt" --kubelet-client-key "$p/kubelet-client.key" \
    --kubelet-certificate-authority "$p/ca.crt" --kubelet-preferred-address-types InternalIP \
    --max-requests-inflight 800 --max-mutating-requests-inflight 400 --profiling=false --v 1
  echo "$API_PORT" >"$STATE/kube-apiserver.port"
}

start_controller_manager() {
  pid_alive kube-controller-manager && return 0
  launch kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --controllers job,namespace,garbagecollector,serviceaccount,serviceaccount-token,pvc-protection,pv-protection,persistentvolume-binder \
    --port 0 --secure-port 0 --leader-elect=false \
    --service-account-private-key-file "$STATE/pki/sa.key" --root-ca-file "$STATE/pki/ca.crt" \
    --feature-gates TTLAfterFinished=true --kube-api-qps 200 --kube-api-burst 400 \
    --profiling=false --v 1
}

start() {
  have_binaries || build
  command -v etcd >/dev/null || apt_install
  mkdir -p "$STATE/logs" && chmod 700 "$STATE"
  make_pki
  make_auth
  start_etcd
  start_apiserver
  local i
  for i in $(seq 1 300); do
    readyz && break
    pid_alive kube-apiserver || { tail -20 "$STATE/logs/kube-apiserver.log" >&2; die "kube-apiserver exited"; }
    sleep 0.2
  done
  readyz || die "kube-apiserver not ready after 60 s (log: $STATE/logs/kube-apiserver.log)"
  start_controller_manager
  sleep 0.5
  pid_alive kube-controller-manager \
    || { tail -20 "$STATE/logs/kube-controller-manager.log" >&2; die "kube-controller-manager exited"; }
  log "ready on https://127.0.0.1:$API_PORT ($(env_line))"
}


stop() {
  stop_one kube-controller-manager
  stop_one kube-apiserver
  stop_one etcd
}

env_line() { echo "KUBECONFIG=$STATE/admin.kubeconfig"; }

status() {
  local name
  for name in etcd kube-apiserver kube-controller-manager; do
    if pid_alive "$name"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"; else echo "$name: stopped"; fi
  done
  readyz && echo "readyz: ok" || { echo "readyz: failing"; return 1; }
}

case "${1:-}" in
  build) build ;;
  unpack) unpack ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  env) env_line ;;
  status) status ;;
  *) echo "usage: $0 build|unpack|start|stop|restart|env|status" >&2; exit 2 ;;
esac
