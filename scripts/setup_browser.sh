#!/usr/bin/env bash
# Makes the browser tests' parts present (idempotent; the session fixture of tests/ui calls it):
#   - Debian's chromium (apt-get install chromium chromium-driver) when /usr/bin/chromium is missing -- never a browser
#     downloaded by Playwright (`playwright install` fails here, and the tests drive the distribution's browser);
#   - axe-core from npm into ${BUDEVAL_CACHE:-~/.cache/budeval}/ui/ (scripts/vendor_ui_assets.sh --axe: pinned
#     version, sha512 checked, licence kept).
# Prints two lines: BUDEVAL_CHROMIUM=<path> and BUDEVAL_AXE=<path of axe.min.js>.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CHROMIUM="${BUDEVAL_CHROMIUM:-/usr/bin/chromium}"
log() { echo "setup_browser: $*" >&2; }

if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" != "0" ]; then
    log "$CHROMIUM is missing and installing it needs root: run  apt-get install -y chromium chromium-driver"
    exit 1
  fi
  log "installing Debian's chromium (apt-get; a few minutes)"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt run (a neighbour's) holds the lock for a while: wait for it instead of failing.
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium chromium-driver >&2
fi
axe="$(bash "$HERE/vendor_ui_assets.sh" --axe)"
echo "BUDEVAL_CHROMIUM=$CHROMIUM"
echo "BUDEVAL_AXE=$axe"
