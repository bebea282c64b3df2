#!/usr/bin/env bash
# Regenerates tests/fixtures/opencompass/<name>/ by running REAL OpenCompass 0.5.4 (CPU) with the real SmolLM2-135M
# model from scripts/setup_opencompass.sh. Each fixture is an OpenCompass --work-dir with one timestamp folder, plus
# the `.budeval/` folder the local backend keeps beside it (config.py, output.log, exit_code). Machine-specific
# absolute paths are rewritten to /workspace/... and /opt/venv/... afterwards.
#
#   scripts/make_fixtures.sh              all fixtures
#   scripts/make_fixtures.sh qa_chat mcq  only these
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
OUT="$REPO/tests/fixtures/opencompass"
ALL=(qa_chat mcq two_models_one_fails two_datasets_one_fails reuse aborted)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")

bash scripts/setup_opencompass.sh
eval "$(bash scripts/setup_opencompass.sh --print-env)"
PY="$BUDEVAL_OPENCOMPASS_PYTHON"
VENV_SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
BASE_PREFIX="$("$PY" -c 'import sys; print(sys.base_prefix)')"
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/budeval-fixtures.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT

run_opencompass() {  # work_dir [extra opencompass args...]
  local work="$1"; shift
  mkdir -p "$work/.budeval"
  local rc=0
  # cwd .budeval/ as in the local backend: stray files OpenCompass writes to its cwd (.cache/, tmp/) stay out of
  # the work dir the parser reads. --max-num-workers 1: two cores; the fixtures need no parallel tasks.
  (cd "$work/.budeval" && "$PY" -m opencompass.cli.main "$work/.budeval/config.py" -w "$work" --max-num-workers 1 "$@") \
    >>"$work/.budeval/output.log" 2>&1 || rc=$?
  echo "$rc" >"$work/.budeval/exit_code"
  echo "  opencompass exit code $rc"
}

rewrite_paths() {  # dir: machine paths -> stable ones, in every text file
  local dir="$1" work="$2"
  find "$dir" -type f \( -name '*.py' -o -name '*.json' -o -name '*.out' -o -name '*.log' -o -name '*.txt' \
    -o -name '*.csv' -o -name '*.md' -o -name 'exit_code' \) -print0 |
    xargs -0 sed -i \
      -e "s#$work#/workspace/runs/$(basename "$dir")#g" \
      -e "s#$BUDEVAL_MODEL_PATH#/workspace/models/SmolLM2-135M-Instruct#g" \
      -e "s#$REPO/budeval/engine/datasets#/workspace/budeval/engine/datasets#g" \
      -e "s#$SCRATCH/data#/workspace/data#g" \
      -e "s#$VENV_SITE#/opt/venv/lib/python3.11/site-packages#g" \
      -e "s#$BASE_PREFIX#/usr/local#g"
}

cp -r "$OUT/data" "$SCRATCH/data"
for name in "${names[@]}"; do
  echo "fixture $name"
  work="$SCRATCH/$name"
  mkdir -p "$work/.budeval"
  first="$name"
  [ "$name" != reuse ] || first=reuse_first  # a first pass whose evaluation fails, then -r with the fixed config
  PYTHONPATH="$REPO" "$PY" scripts/opencompass_fixture_configs.py "$first" "$work/.budeval/config.py" \
    "$BUDEVAL_MODEL_PATH" "$SCRATCH/data"
  run_opencompass "$work"
  if [ "$name" = reuse ]; then
    ts="$(basename "$(find "$work" -mindepth 1 -maxdepth 1 -type d -name '20*' | head -1)")"
    sleep 1  # the second summary is named by the clock: make sure it differs from the first
    echo "  reusing $ts"
    PYTHONPATH="$REPO" "$PY" scripts/opencompass_fixture_configs.py reuse "$work/.budeval/config.py" \
      "$BUDEVAL_MODEL_PATH" "$SCRATCH/data"
    run_opencompass "$work" -r "$ts"
  fi
  rm -rf "$work/.budeval/.cache" "$work/.budeval/tmp"  # OpenCompass caches, not output
  rewrite_paths "$work" "$work"
  rm -rf "${OUT:?}/$name"
  cp -r "$work" "$OUT/$name"
done
echo "fixtures written to $OUT: ${names[*]}"
