#!/usr/bin/env bash
# Sets up the dev venv (idempotent) and runs lint, type checks, the import contract and every test.
# Servers the tests need (SeaweedFS S3, etcd + kube-apiserver + kube-controller-manager, the OpenCompass venv) are
# installed/built and started by the tests' own session fixtures through scripts/, and stopped by PID afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev]'
.venv/bin/ruff check budeval tests scripts
.venv/bin/mypy budeval
.venv/bin/lint-imports
.venv/bin/python -m pytest -q "$@"
