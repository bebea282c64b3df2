#!/usr/bin/env python3
"""Run the Dapr Python SDK's own workflow examples, unmodified, against the embedded sidecar (no daprd, no Dapr CLI).

The examples are not part of this repository (their code is Dapr's): point ``--examples`` at the ``examples/workflow``
folder of a dapr/python-sdk checkout (the tag of the installed ``dapr`` version), e.g.::

    git clone --depth 1 --branch v1.19.0 https://github.com/dapr/python-sdk ~/.cache/budeval/dapr-python-sdk
    .venv/bin/python scripts/run_dapr_examples.py --examples ~/.cache/budeval/dapr-python-sdk/examples/workflow

Without ``--examples`` it looks in ``$BUDEVAL_DAPR_EXAMPLES`` and then ``~/.cache/budeval/dapr-python-sdk*/examples/
workflow``; when none is there it says so and exits 2.

How a step runs: the examples' README holds ``<!-- STEP ... -->`` blocks (the format Dapr's own CI checks with
mechanical-markdown): ``expected_stdout_lines``, ``match_order`` (``none`` = any order), ``timeout_seconds``, and a
shell block of ``export K=V`` and ``dapr run --app-id ID [flags] -- python3 FILE ARGS [&]`` lines. Each step gets one
fresh embedded sidecar serving every app id the step names (the first on the main port, the others as extra apps,
each on its own port, as each app has its own daprd); each ``dapr run`` becomes the command after ``--`` run with
this interpreter, ``DAPR_GRPC_PORT`` = its app's port, ``DAPR_HTTP_PORT`` = the sidecar's HTTP port and the step's
exports; ``&`` lines run in the background (waited for at the end of the step), the others one after another. The
step passes when every expected line is contained in a line of the combined output (in order unless ``match_order:
none``) and every process exited 0 (a background process still running at the step's timeout is stopped).
A shell block of ``dapr run`` lines outside any STEP (examples documented with sample output only) runs the same
way and is judged by the exit status alone. ``--only NAME`` runs the steps whose name or command contains NAME.
Exit status: 0 all passed, 1 a step failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STEP = re.compile(r"<!--\s*STEP(.*?)-->(.*?)<!--\s*END_STEP\s*-->", re.S)


@dataclass
class Step:
    name: str
    expected: list[str]
    ordered: bool
    timeout: float
    commands: list[str] = field(default_factory=list)


def parse_steps(readme: str) -> list[Step]:
    """The README's STEP blocks (the header is YAML; only the keys used here are read)."""
    import yaml

    steps = []
    for header, body in STEP.findall(readme):
        meta: dict[str, Any] = yaml.safe_load(header) or {}
        block = re.search(r"```(?:sh|bash)\n(.*?)```", body, re.S)
        commands = [ln.strip() for ln in (block.group(1) if block else "").splitlines() if ln.strip()]
        steps.append(Step(name=str(meta.get("name", "?")), expected=[str(x) for x in meta.get("expected_stdout_lines")
                                                                       or []],
                          ordered=str(meta.get("match_order", "")).lower() != "none",
                          timeout=float(meta.get("timeout_seconds", 60)), commands=commands))
    # examples documented without a STEP block: a shell block of `dapr run ... -- python3 FILE` lines is run too,
    # judged by the exit status alone (their README shows sample output, not lines to match)
    rest = STEP.sub("", readme)
    for block in re.findall(r"```(?:sh|bash)\n(.*?)```", rest, re.S):
        commands = [ln.strip() for ln in block.splitlines() if ln.strip()]
        if commands and all(_dapr_run(c) is not None or c.startswith("export ") for c in commands):
            steps.append(Step(name="(exit status only)", expected=[], ordered=True, timeout=120.0, commands=commands))
    return steps


def _dapr_run(command: str) -> tuple[str, list[str], bool] | None:
    """``(app_id, argv after --, background)`` of a ``dapr run`` line; None for anything else."""
    background = command.endswith("&")
    words = shlex.split(command.rstrip("&").strip())
    if words[:2] != ["dapr", "run"] or "--" not in words:
        return None
    flags, argv = words[2:words.index("--")], words[words.index("--") + 1:]
    app_id = flags[flags.index("--app-id") + 1] if "--app-id" in flags else "app"
    if argv and argv[0] in ("python", "python3"):
        argv = [sys.executable, *argv[1:]]
    return app_id, argv, background


def run_step(step: Step, examples: Path) -> tuple[bool, list[str], str]:
    """Run one step; ``(passed, output lines, why it failed)``."""
    from budeval.sidecar.embedded import EmbeddedSidecar

    runs = [r for r in (_dapr_run(c) for c in step.commands) if r is not None]
    app_ids = list(dict.fromkeys(app for app, _, _ in runs))
    if not app_ids:
        return False, [], "no `dapr run` line in the step"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
    for command in step.commands:
        if command.startswith("export "):
            key, _, value = command[len("export "):].partition("=")
            env[key.strip()] = value.strip().strip("'\"")
    output: list[str] = []
    problems: list[str] = []
    # every process of the step writes to ONE pipe, as `dapr run` lines in one shell do: lines keep the order in which
    # they were written (a pipe per process, read by threads, would reorder them across processes)
    read_fd, write_fd = os.pipe()

    def pump() -> None:
        with os.fdopen(read_fd, encoding="utf-8", errors="replace") as pipe:
            for line in pipe:
                output.append(line.rstrip("\n"))
                print(f"  | {line.rstrip()}", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    with tempfile.TemporaryDirectory(prefix="dapr-examples-") as state:
        sidecar = EmbeddedSidecar(Path(state) / "sidecar.db", app_id=app_ids[0],
                                  apps={app: 0 for app in app_ids[1:]}).start()
        deadline = time.monotonic() + step.timeout
        background: list[tuple[subprocess.Popen[bytes], str]] = []
        try:
            for app, argv, in_background in runs:
                proc_env = {**env, "DAPR_RUNTIME_HOST": "127.0.0.1", "APP_ID": app,
                            "DAPR_GRPC_PORT": str(sidecar.app_ports[app]), "DAPR_HTTP_PORT": str(sidecar.http_port),
                            "PYTHONUNBUFFERED": "1"}
                proc = subprocess.Popen(argv, cwd=examples, env=proc_env, stdout=write_fd, stderr=write_fd)
                if in_background:
                    background.append((proc, app))
                    continue
                if not _wait(proc, deadline):
                    problems.append(f"{app}: {' '.join(argv[1:])} did not finish in {step.timeout:.0f} s")
                elif proc.returncode != 0:
                    problems.append(f"{app}: {' '.join(argv[1:])} exited {proc.returncode}")
            for proc, app in background:
                if not _wait(proc, deadline):
                    pass  # a long-lived helper app (e.g. `sleep` then exit) stopped at the step's end
                elif proc.returncode != 0:
                    problems.append(f"{app} (background) exited {proc.returncode}")
        finally:
            for proc, _ in background:
                _wait(proc, time.monotonic())
            os.close(write_fd)  # the children's copies are closed: the reader sees the end
            reader.join(timeout=10)
            sidecar.stop()
    missing = _missing(step.expected, output, step.ordered)
    if missing:
        problems.append("expected lines not seen" + (" in order" if step.ordered else "") + ": " +
                        "; ".join(repr(m) for m in missing))
    return not problems, output, " | ".join(problems)


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Wait for ``proc`` until ``deadline`` (monotonic); past it, stop it (SIGTERM, then SIGKILL) and say False."""
    try:
        proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return False
    return True


def _missing(expected: list[str], output: list[str], ordered: bool) -> list[str]:
    if not ordered:
        return [e for e in expected if not any(e in line for line in output)]
    at = 0
    for n, want in enumerate(expected):
        while at < len(output) and want not in output[at]:
            at += 1
        if at == len(output):
            return expected[n:]
        at += 1
    return []


def find_examples(given: str | None) -> Path | None:
    candidates = [given, os.environ.get("BUDEVAL_DAPR_EXAMPLES")]
    cache = Path.home() / ".cache" / "budeval"
    candidates += [str(p / "examples" / "workflow") for p in sorted(cache.glob("dapr-python-sdk*"))]
    for candidate in candidates:
        if candidate and (Path(candidate) / "README.md").is_file():
            return Path(candidate)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", help="the examples/workflow folder of a dapr/python-sdk checkout")
    parser.add_argument("--only", action="append", default=[], help="run the steps whose name/command has this")
    args = parser.parse_args(argv)
    examples = find_examples(args.examples)
    if examples is None:
        print("no Dapr python-sdk examples found (give --examples or set BUDEVAL_DAPR_EXAMPLES)", file=sys.stderr)
        return 2
    steps = parse_steps((examples / "README.md").read_text(encoding="utf-8"))
    if args.only:
        steps = [s for s in steps if any(o in s.name or any(o in c for c in s.commands) for o in args.only)]
    results = []
    for step in steps:
        label = f"{step.name}: {' ; '.join(step.commands)}"
        print(f"== {label}", flush=True)
        passed, _, why = run_step(step, examples)
        results.append((label, passed, why))
        print(f"-- {'PASS' if passed else 'FAIL'}{': ' + why if why else ''}", flush=True)
    print()
    for label, passed, why in results:
        print(f"{'PASS' if passed else 'FAIL'}  {label}" + (f"\n      {why}" if why else ""))
    return 0 if all(p for _, p, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
