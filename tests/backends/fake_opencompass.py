"""Stands in for ``python -m opencompass.cli.main CONFIG -w WORK ...`` in the local backend's tests (and runs the
environment capture, ``python -c SCRIPT``, for real).

What it does is read from a ``# fake: MODE [ARG]`` line in the config text:
``copy NAME`` copies the timestamp folder of the committed fixture NAME into the work dir; ``sleep S [then NAME]``
starts a child ``sleep`` in the same process group (its pid goes to ``.budeval/child_pid``), waits S seconds,
then optionally copies; ``exit0`` writes nothing; ``crash`` prints a traceback and exits 3; ``tasks_fail`` writes a
summary of ``-`` cells and a task log with an ERROR line. Every invocation appends a line to ``.budeval/invocations``
and the environment facts tests check to ``.budeval/env.json`` (whether a key was given, never the key).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "opencompass"


def copy_fixture(name: str, work: Path) -> None:
    src = FIXTURES / name
    for ts in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        shutil.copytree(ts, work / ts.name)


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["-c"]:  # the run's environment capture (budeval.engine.environment): run it for real
        exec(compile(args[1], "<capture>", "exec"), {"__name__": "__main__"})
        return 0
    assert args[:2] == ["-m", "opencompass.cli.main"], args
    config, work = Path(args[2]), Path(args[args.index("-w") + 1])
    meta = work / ".budeval"
    with (meta / "invocations").open("a") as f:
        f.write(f"{os.getpid()}\n")
    key = os.environ.get("OPENAI_API_KEY")
    (meta / "env.json").write_text(
        json.dumps(
            {
                "key_sha256": hashlib.sha256(key.encode()).hexdigest() if key else None,
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "cwd": os.getcwd(),
            }
        )
    )
    line = next(ln for ln in config.read_text().splitlines() if ln.startswith("# fake:"))
    mode, *rest = line.split(":", 1)[1].split()
    print(f"fake opencompass: {mode} {rest}", flush=True)
    if mode == "copy":
        copy_fixture(rest[0], work)
    elif mode == "sleep":
        child = subprocess.Popen(["sleep", "300"])
        (meta / "child_pid").write_text(str(child.pid))
        time.sleep(float(rest[0]))
        child.kill()
        child.wait()
        if len(rest) == 3 and rest[1] == "then":
            copy_fixture(rest[2], work)
    elif mode == "exit0":
        pass
    elif mode == "crash":
        print("Traceback (most recent call last):\nRuntimeError: fake crash for the test", flush=True)
        return 3
    elif mode == "tasks_fail":
        ts = work / "20260101_000000"
        (ts / "summary").mkdir(parents=True)
        (ts / "summary" / "summary_20260101_000000.csv").write_text("dataset,version,metric,mode,m\ntiny_qa,-,-,-,-\n")
        (ts / "logs" / "infer" / "m").mkdir(parents=True)
        (ts / "logs" / "infer" / "m" / "tiny_qa.out").write_text(
            "11/23 08:00:00 - OpenCompass - ERROR - task failed: fake model error\n"
        )
    else:
        print(f"unknown fake mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
