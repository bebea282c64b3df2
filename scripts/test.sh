#!/usr/bin/env bash
# Sets up the dev venv (idempotent) and runs lint, type checks, the import contract and every test.
# What the tests need (the OpenCompass venv, etcd + kube-apiserver + kube-controller-manager, the real node, helm,
# the OpenAI-compatible server's venv, chromium) is built here first; servers (SeaweedFS S3, the apiserver, the node,
# the OpenAI-compatible server) are started by the tests' own session fixtures through scripts/ and stopped by PID.
# Arguments go to pytest (e.g. `scripts/test.sh tests/decisions`).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev]'
.venv/bin/ruff check budeval tests scripts
.venv/bin/mypy budeval
.venv/bin/lint-imports
# What the tests start, built once before pytest (cached in ${BUDEVAL_CACHE:-~/.cache/budeval}; instant when built):
# on a cold machine these builds take minutes, longer than the 600 s a test may take (pytest-timeout counts a session
# fixture's setup against the first test that needs it), so no test's timeout covers a build.
bash scripts/setup_opencompass.sh
bash scripts/kube/apiserver.sh build
bash scripts/kube/node.sh build            # kubelet, kube-scheduler, kube-proxy, containerd, the pause image
bash scripts/kube/images.sh runner         # the runner image tests/k8s_node imports
bash scripts/helm.sh --path >/dev/null
bash scripts/openai_server.sh install      # the OpenAI-compatible server's venv (endpoint and judge tests)
bash scripts/setup_browser.sh >/dev/null   # Debian's chromium and axe-core (tests/ui)
# --durations: the slowest tests in every CI log (the 90-minute budget is watched from these)
.venv/bin/python -m pytest -q --durations=25 "$@"
