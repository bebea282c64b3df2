#!/bin/sh
# Stands in for the OpenCompass venv's python in the recovery tests (BUDEVAL_OPENCOMPASS_PYTHON), called as
#   fake_opencompass.sh -m opencompass.cli.main CONFIG -w WORK_DIR ...
# It appends one line to $FAKE_OC_COUNTER (so a test can prove the run started exactly once), sleeps
# $FAKE_OC_SLEEP seconds (a window to kill the service "during the run"), then copies the real OpenCompass output in
# $FAKE_OC_FIXTURE into WORK_DIR.
work="$5"
echo "$$ $3" >>"$FAKE_OC_COUNTER"
sleep "${FAKE_OC_SLEEP:-0}"
mkdir -p "$work"
for d in "$FAKE_OC_FIXTURE"/2*; do
    cp -R "$d" "$work"/
done
