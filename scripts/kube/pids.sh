# Sourced by scripts/kube/apiserver.sh and scripts/kube/node.sh: stop a process they started, by the PID file
# "$STATE/<name>.pid" (TERM, up to 10 s, then KILL), and remove the file. Needs STATE set by the caller.

stop_one() {
  local name="$1" pid i
  [ -f "$STATE/$name.pid" ] || return 0
  pid="$(cat "$STATE/$name.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/$name.pid"
}
