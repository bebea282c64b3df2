#!/bin/sh
# Stands in for the OpenCompass venv's python in service tests (BUDEVAL_OPENCOMPASS_PYTHON): called as
#   fake_opencompass.sh -m opencompass.cli.main CONFIG -w WORK_DIR --max-num-workers N
# it copies the real OpenCompass output committed in $FAKE_OC_FIXTURE (e.g. tests/fixtures/opencompass/qa_chat) into
# WORK_DIR, so the run "finishes" at once with real files. A config naming the model path
# /models/budeval-test-sleep sleeps instead (a run to cancel).
config="$3"
work="$5"
if grep -q "budeval-test-sleep" "$config"; then
    sleep 600
    exit 0
fi
mkdir -p "$work"
for d in "$FAKE_OC_FIXTURE"/2*; do
    cp -R "$d" "$work"/
done
echo "fake opencompass: copied $FAKE_OC_FIXTURE"
