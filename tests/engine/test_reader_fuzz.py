"""Fuzzing the result reader with mutated real OpenCompass output: whatever the damage, the reader either reads the
run or raises a typed budeval error -- never another exception -- and never shows the content of a file outside
the run folder.

Mutations (hypothesis): truncate a file, flip or insert bytes (NaN, quotes, braces, invalid UTF-8, path parts),
replace a file with random bytes, delete it, or point it at a secret outside the run through a symlink."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budeval.engine.results import parse_run
from budeval.errors import BudevalError

ROOT = Path(__file__).resolve().parents[1] / "fixtures"
RUNS = sorted(
    [p / "run" for p in (ROOT / "realworld").iterdir() if (p / "run").is_dir() and p.name != "model-abbr-abspath"]
    + [p for p in (ROOT / "opencompass").iterdir() if p.is_dir() and any(p.glob("2*"))]
)
SECRET = "TOP-SECRET-OUTSIDE-CONTENT"
INSERTS = [
    b"NaN",
    b"Infinity",
    b'"',
    b"{",
    b"]",
    b"\xff\xfe",
    b"../../",
    b"/etc/passwd",
    b",-,-",
    b"\n",
    b"\x00",
    b"1e999",
]


def _files(run: Path) -> list[Path]:
    return sorted(p for p in run.rglob("*") if p.is_file() and ".budeval" not in p.parts)


mutation = st.tuples(
    st.sampled_from(["truncate", "flip", "insert", "random", "delete", "symlink"]),
    st.integers(min_value=0, max_value=10**9),  # which file (modulo)
    st.floats(min_value=0.0, max_value=1.0),  # where in it
    st.sampled_from(INSERTS),
    st.binary(min_size=0, max_size=64),
)


def _mutate(work: Path, outside: Path, how: tuple[str, int, float, bytes, bytes]) -> None:
    kind, pick, where, insert, noise = how
    files = _files(work)
    if not files:
        return
    path = files[pick % len(files)]
    data = path.read_bytes()
    at = int(where * len(data))
    if kind == "truncate":
        path.write_bytes(data[:at])
    elif kind == "flip" and data:
        at = min(at, len(data) - 1)
        path.write_bytes(data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :])
    elif kind == "insert":
        path.write_bytes(data[:at] + insert + data[at:])
    elif kind == "random":
        path.write_bytes(noise)
    elif kind == "delete":
        path.unlink()
    elif kind == "symlink":
        path.unlink()
        path.symlink_to(outside)


def _read_everything(work: Path) -> str:
    run = parse_run(work, workers=0)
    seen = [repr(run.facts), repr(run.metrics), repr(run.statuses)]
    for batch in run.prediction_batches(batch_size=7):
        seen += batch.prompt + batch.prediction + batch.gold
    return "\n".join(seen)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=st.sampled_from(RUNS), mutations=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_runs_give_rows_or_a_typed_error(
    run: Path, mutations: list[tuple[str, int, float, bytes, bytes]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(run, work, symlinks=True)
        outside = Path(tmp) / "outside.json"
        outside.write_text(json.dumps({"0": {"origin_prompt": SECRET, "prediction": SECRET, "gold": "x"}}))
        for how in mutations:
            _mutate(work, outside, how)
        try:
            text = _read_everything(work)
        except BudevalError as exc:
            text = str(exc)
        assert SECRET not in text
