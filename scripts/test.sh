#!/usr/bin/env bash
# Sets up the dev venv (idempotent) and runs lint, type checks and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev]'
.venv/bin/ruff check budeval tests
.venv/bin/mypy budeval
.venv/bin/python -m pytest -q
