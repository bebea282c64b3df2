#!/usr/bin/env bash
# Vendors the web UI's third-party browser files from the npm registry: exact versions, the registry's sha512 of each
# tarball checked before anything is unpacked, the package's licence kept next to the file. Idempotent.
#
#   scripts/vendor_ui_assets.sh            uPlot into budeval/ui/static/vendor/ (committed: the UI ships offline)
#   scripts/vendor_ui_assets.sh --axe      axe-core into ${BUDEVAL_CACHE:-~/.cache/budeval}/ui/ (tests only: the
#                                          accessibility checks of tests/ui); prints the path of axe.min.js
#
# Why uPlot (docs/ui.md "Charts"): maintained, MIT, ~50 KB minified, draws line charts with filled bands between two
# series (the CI bands of learning curves) on canvas, no dependencies; Chart.js needs a plugin for bands and is 4x
# the size, ECharts is ~1 MB (the first page load must stay under 500 KB).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CACHE="${BUDEVAL_CACHE:-$HOME/.cache/budeval}"
REGISTRY="${BUDEVAL_NPM_REGISTRY:-https://registry.npmjs.org}"

# name version sha512 (the registry's dist.integrity, base64)
UPLOT=(uplot 1.6.32 "KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==")
AXE=(axe-core 4.14.1 "FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==")

log() { echo "vendor_ui_assets: $*" >&2; }

# fetch NAME VERSION SHA512 DIR: the package unpacked under DIR/package after its sha512 matched.
fetch() {
  local name="$1" version="$2" want="$3" dir="$4"
  local tgz="$dir/$name-$version.tgz"
  mkdir -p "$dir"
  curl -fsSL --retry 3 -o "$tgz.part" "$REGISTRY/$name/-/$name-$version.tgz"
  local got
  got="$(openssl dgst -sha512 -binary "$tgz.part" | base64 -w0)"
  if [ "$got" != "$want" ]; then
    rm -f "$tgz.part"
    log "$name $version: sha512 mismatch (got $got, want $want); refusing it"
    exit 1
  fi
  mv "$tgz.part" "$tgz"
  rm -rf "$dir/package"
  tar -xzf "$tgz" -C "$dir"
}

if [ "${1:-}" = "--axe" ]; then
  dest="$CACHE/ui/axe-core-${AXE[1]}"
  if [ ! -f "$dest/axe.min.js" ] || [ ! -f "$dest/LICENSE" ]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    fetch "${AXE[@]}" "$tmp"
    mkdir -p "$dest"
    cp "$tmp/package/axe.min.js" "$dest/axe.min.js.part"
    cp "$tmp/package/LICENSE" "$dest/LICENSE"
    mv "$dest/axe.min.js.part" "$dest/axe.min.js"
    log "axe-core ${AXE[1]} in $dest"
  fi
  echo "$dest/axe.min.js"
  exit 0
fi

dest="$ROOT/budeval/ui/static/vendor"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fetch "${UPLOT[@]}" "$tmp"
mkdir -p "$dest"
cp "$tmp/package/dist/uPlot.iife.min.js" "$dest/uPlot.iife.min.js"
cp "$tmp/package/dist/uPlot.min.css" "$dest/uPlot.min.css"
cp "$tmp/package/LICENSE" "$dest/uPlot.LICENSE"
printf 'uplot %s sha512-%s\n' "${UPLOT[1]}" "${UPLOT[2]}" > "$dest/VERSIONS"
log "uPlot ${UPLOT[1]} in $dest"
