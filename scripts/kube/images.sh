#!/usr/bin/env bash
# Builds the images the real test node needs as OCI archives, without Docker or a registry, and imports them into
# the node's containerd (scripts/kube/node.sh). Recipes mirror docker/Dockerfile.runner and docker/Dockerfile.service;
# docs/kubernetes.md "Images without Docker" lists where they differ.
#
#   scripts/kube/images.sh pause|runner|service|all   # build (cached) ${BUDEVAL_CACHE}/kube-node/images/NAME.tar
#   scripts/kube/images.sh import NAME...              # build if needed, then `ctr -n k8s.io images import`
#
# pause   registry.k8s.io/pause:3.2      the sandbox image: build/pause/linux/pause.c of the kubernetes source, static
# runner  opencompass-runner:0.5.4-cpu   Debian bookworm minbase + python3.11 + libgomp1 + git, the cached OpenCompass
#                                        venv (scripts/setup_opencompass.sh) relocated to /opt/opencompass, uid 1000
# service budeval:0.1.0                  the same base + a venv with this checkout installed (pip install .) at
#                                        /opt/budeval, workflows/ at /opt/budeval/share/workflows, uid 1000
# Each archive is rebuilt when its inputs change (a build id stored next to it).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE_ROOT="${BUDEVAL_CACHE:-$HOME/.cache/budeval}"
NCACHE="$CACHE_ROOT/kube-node"
OUT="$NCACHE/images"
ROOTFS="$NCACHE/rootfs-bookworm"
ROOTFS_PACKAGES="python3.11,libgomp1,ca-certificates,git"
OC_VENV="${BUDEVAL_OPENCOMPASS_VENV:-$CACHE_ROOT/opencompass-venv}"
STATE="${BUDEVAL_NODE_STATE:-/tmp/budeval-node}"
SOCK="$STATE/containerd/containerd.sock"
RUNNER_IMAGE="docker.io/library/opencompass-runner:0.5.4-cpu"
SERVICE_IMAGE="docker.io/library/budeval:0.1.0"
PY=/usr/bin/python3.11
OCI=(python3 "$HERE/oci_image.py")

log() { echo "images.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

cached() { # name build-id
  [ -f "$OUT/$1.tar" ] && [ "$(cat "$OUT/$1.build-id" 2>/dev/null)" = "$2" ]
}

rootfs() {
  [ -f "$ROOTFS/.done" ] && [ "$(cat "$ROOTFS/.done")" = "$ROOTFS_PACKAGES" ] && return 0
  command -v debootstrap >/dev/null || die "debootstrap missing (scripts/kube/node.sh build installs it)"
  log "debootstrap bookworm minbase + $ROOTFS_PACKAGES (a few minutes)"
  rm -rf "$ROOTFS.tmp"
  debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" bookworm "$ROOTFS.tmp" \
    "${BUDEVAL_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$NCACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$NCACHE/debootstrap.log" >&2; die "debootstrap failed (log: $NCACHE/debootstrap.log)"; }
  # Like the slim Docker base images: no apt lists or package caches.
  rm -rf "$ROOTFS.tmp"/var/lib/apt/lists/* "$ROOTFS.tmp"/var/cache/apt/*.bin "$ROOTFS.tmp"/var/cache/apt/archives/*.deb
  echo "$ROOTFS_PACKAGES" >"$ROOTFS.tmp/.done"
  rm -rf "$ROOTFS" && mv "$ROOTFS.tmp" "$ROOTFS"
}

# An upper layer's /etc/passwd and /etc/group: the base's plus one system user with uid/gid 1000.
add_user() { # layer-dir name home
  mkdir -p "$1/etc"
  cp "$ROOTFS/etc/passwd" "$ROOTFS/etc/group" "$1/etc/"
  echo "$2:x:1000:1000::$3:/usr/sbin/nologin" >>"$1/etc/passwd"
  echo "$2:x:1000:" >>"$1/etc/group"
}

# Copy a venv to DEST inside a layer and point it at the image's /usr/bin/python3.11 (same minor version, so the
# cp311 wheels stay valid); scripts' python shebangs are rewritten to the target path.
relocate_venv() { # src-venv layer-dir target-path
  local src="$1" dest="$2$3" f
  # Never edit the source venv (a shared cache): the destination must be a fresh real folder.
  [ ! -e "$dest" ] && [ ! -L "$dest" ] || die "relocate_venv: $dest exists"
  mkdir -p "$dest"
  [ "$(realpath "$dest")" != "$(realpath "$src")" ] || die "relocate_venv: $dest is $src"
  cp -a "$src/." "$dest/"  # the venv's contents, also when $src is a symlink
  rm -f "$dest/pip-freeze.txt"
  for f in python python3 python3.11; do rm -f "$dest/bin/$f"; done
  ln -s "$PY" "$dest/bin/python3.11"; ln -s python3.11 "$dest/bin/python3"; ln -s python3.11 "$dest/bin/python"
  printf 'home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11\nexecutable = %s\n' "$PY" \
    >"$dest/pyvenv.cfg"
  # Console scripts name the interpreter by the path the venv was created at (maybe behind a symlink of $src).
  for f in "$dest"/bin/*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    head -c 256 "$f" | head -1 | grep -q '^#!/.*/bin/python[0-9.]*$' || continue
    sed -i "1s|^#!/.*/bin/python[0-9.]*$|#!$3/bin/python|" "$f"
  done
  find "$dest" -name '__pycache__' -type d -prune -exec rm -rf {} +
}

pause() {
  local id="pause-3.2+static-1" src="$CACHE_ROOT/kube/build/src/build/pause/linux/pause.c"
  cached pause "$id" && return 0
  [ -f "$src" ] || "$HERE/apiserver.sh" unpack
  local w="$NCACHE/build/pause"
  rm -rf "$w" && mkdir -p "$w/root" "$OUT"
  gcc -Os -static -DVERSION=3.2-budeval -o "$w/root/pause" "$src" && strip "$w/root/pause"
  "${OCI[@]}" --out "$OUT/pause.tar" >"$OUT/pause.digest" --name registry.k8s.io/pause:3.2 --layer "$w/root" --entrypoint '["/pause"]'
  echo "$id" >"$OUT/pause.build-id"
  log "built $OUT/pause.tar"
}

runner() {
  [ -x "$OC_VENV/bin/python" ] || "$REPO/scripts/setup_opencompass.sh"
  local id
  id="runner-1:$ROOTFS_PACKAGES:$(sha256sum "$OC_VENV/pip-freeze.txt" | cut -c1-16)"
  cached runner "$id" && return 0
  rootfs
  local w="$NCACHE/build/runner"
  rm -rf "$w" && mkdir -p "$w/layer/tmp" "$OUT"
  chmod 1777 "$w/layer/tmp"
  add_user "$w/layer" runner /tmp
  log "relocating $OC_VENV to /opt/opencompass"
  relocate_venv "$OC_VENV" "$w/layer" /opt/opencompass
  log "writing $RUNNER_IMAGE"
  "${OCI[@]}" --out "$OUT/runner.tar" >"$OUT/runner.digest" --name "$RUNNER_IMAGE" --layer "$ROOTFS" --layer "$w/layer" \
    --env PATH=/opt/opencompass/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 --env HOME=/tmp \
    --user 1000:1000 --workdir /tmp --cmd '["python", "-m", "opencompass.cli.main", "--help"]'
  rm -rf "$w"
  echo "$id" >"$OUT/runner.build-id"
  log "built $OUT/runner.tar"
}

service_inputs_hash() {
  (cd "$REPO" && find budeval workflows pyproject.toml setup.py README.md -type f -not -path '*/__pycache__/*' \
      -not -name build_info.json -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

service() {
  local id
  id="service-1:$ROOTFS_PACKAGES:$(service_inputs_hash)"
  cached service "$id" && return 0
  rootfs
  local w="$NCACHE/build/service" commit
  commit="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || true)"
  rm -rf "$w" && mkdir -p "$w/layer/var/lib/budeval/data" "$w/layer/tmp" "$OUT"
  chmod 1777 "$w/layer/tmp"
  log "installing this checkout into a fresh venv (pip install .)"
  python3.11 -m venv "$w/venv"
  # A copy of the sources: pip builds in place and setup.py stamps build_info.json.
  mkdir -p "$w/src"
  (cd "$REPO" && cp -r pyproject.toml setup.py README.md budeval "$w/src/")
  BUDEVAL_COMMIT="$commit" PIP_DISABLE_PIP_VERSION_CHECK=1 "$w/venv/bin/pip" install -q "$w/src" \
    || die "pip install of the service failed"
  "$w/venv/bin/python" -c "import budeval.cli.main, chdb, dapr.ext.workflow"
  add_user "$w/layer" budeval /var/lib/budeval
  relocate_venv "$w/venv" "$w/layer" /opt/budeval
  mkdir -p "$w/layer/opt/budeval/share"
  cp -r "$REPO/workflows" "$w/layer/opt/budeval/share/workflows"
  chown -R 1000:1000 "$w/layer/var/lib/budeval"
  log "writing $SERVICE_IMAGE"
  "${OCI[@]}" --out "$OUT/service.tar" >"$OUT/service.digest" --name "$SERVICE_IMAGE" --layer "$ROOTFS" --layer "$w/layer" \
    --env PATH=/opt/budeval/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 --env HOME=/var/lib/budeval \
    --env BUDEVAL_DATA_DIR=/var/lib/budeval/data --env BUDEVAL_SUITES_DIR=/opt/budeval/share/workflows \
    --env BUDEVAL_HOST=0.0.0.0 --env BUDEVAL_PORT=8080 \
    --user 1000:1000 --workdir /var/lib/budeval --entrypoint '["budeval"]' --cmd '["serve"]'
  rm -rf "$w"
  echo "$id" >"$OUT/service.build-id"
  log "built $OUT/service.tar"
}

import() {
  ctr --address "$SOCK" version >/dev/null 2>&1 || die "the node's containerd is not running ($SOCK)"
  local name ref digest
  for name in "$@"; do
    case "$name" in
      pause) ref=registry.k8s.io/pause:3.2 ;; runner) ref="$RUNNER_IMAGE" ;; service) ref="$SERVICE_IMAGE" ;;
      *) die "unknown image $name" ;;
    esac
    "$name"
    digest="$(cat "$OUT/$name.digest" 2>/dev/null || true)"
    if [ -n "$digest" ] && ctr --address "$SOCK" -n k8s.io images ls "name==$ref" | grep -q "$digest"; then
      log "$name already imported ($digest)"
      continue
    fi
    ctr --address "$SOCK" -n k8s.io images import "$OUT/$name.tar" >/dev/null
    log "imported $name"
  done
}

case "${1:-}" in
  pause|runner|service) "$1" ;;
  all) pause; runner; service ;;
  import) shift; import "$@" ;;
  *) echo "usage: $0 pause|runner|service|all|import NAME..." >&2; exit 2 ;;
esac
