#!/bin/sh
# Stands in for the OpenCompass venv's python in the service and recovery tests (BUDEVAL_OPENCOMPASS_PYTHON), called as
#   fake_opencompass.sh -m opencompass.cli.main CONFIG -w WORK_DIR --max-num-workers N
# (and as `fake_opencompass.sh -c SCRIPT`, the run's environment capture, which it runs with python3)
# It copies the real OpenCompass output committed in $FAKE_OC_FIXTURE (e.g. tests/fixtures/opencompass/qa_chat) into
# WORK_DIR, so the run "finishes" with real files. Optional: $FAKE_OC_COUNTER gets one line per start (a test proves
# the run started exactly once); $FAKE_OC_SLEEP seconds of sleep first (a window to kill the service "during the
# run"); a config naming the model path /models/budeval-test-sleep sleeps instead of finishing (a run to cancel);
# one naming /models/budeval-test-fail exits 1 at once (a run that fails); one naming a model path
# /models/budeval-fixture-<a__b__c> copies $FAKE_OC_FIXTURES_ROOT/a/b/c instead (one service, runs with different
# real outputs: tests/decisions/test_e2e_series.py).
if [ "$1" = "-c" ]; then  # the run's environment capture (budeval.engine.environment): run it for real
    exec python3 -c "$2"
fi
config="$3"
work="$5"
if [ -n "$FAKE_OC_COUNTER" ]; then
    echo "$$ $config" >>"$FAKE_OC_COUNTER"
fi
if grep -q "budeval-test-fail" "$config"; then
    echo "fake opencompass: failing as asked" >&2
    exit 1
fi
if grep -q "budeval-test-sleep" "$config"; then
    sleep 600
    exit 0
fi
sleep "${FAKE_OC_SLEEP:-0}"
fixture="$FAKE_OC_FIXTURE"
tag=$(grep -o 'budeval-fixture-[A-Za-z0-9_-]*' "$config" | head -n 1)
if [ -n "$tag" ] && [ -n "$FAKE_OC_FIXTURES_ROOT" ]; then
    fixture="$FAKE_OC_FIXTURES_ROOT/$(echo "${tag#budeval-fixture-}" | sed 's#__#/#g')"
fi
mkdir -p "$work"
for d in "$fixture"/2*; do
    cp -R "$d" "$work"/
done
echo "fake opencompass: copied $fixture"
