# Sourced by scripts/kube/apiserver.sh and scripts/kube/node.sh (needs STATE set by the caller): the processes they
# started, by the PID file "$STATE/<name>.pid".
#
# A PID file can outlive its process (a killed machine, a copied or restored /tmp, a reboot) and its number can be
# reused by anything: a PID counts as ours only while that process's command line names this state folder (every
# process these scripts launch is given a path under "$STATE/"), so a stale file is never taken for a running
# server and a stranger is never signalled.

# pid_alive NAME: exit 0 when NAME's recorded process runs and is ours.
pid_alive() {
  local pid
  [ -f "$STATE/$1.pid" ] || return 1
  pid="$(cat "$STATE/$1.pid" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$STATE/"
}

# stop_one NAME: TERM, up to 10 s, then KILL -- only when the recorded process is ours; the PID file goes either way.
stop_one() {
  local name="$1" pid i
  [ -f "$STATE/$name.pid" ] || return 0
  if pid_alive "$name"; then
    pid="$(cat "$STATE/$name.pid")"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/$name.pid"
}
