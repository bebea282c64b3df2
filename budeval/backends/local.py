"""Runs OpenCompass as detached local processes: the embedded default's job backend (no Kubernetes needed).

Everything the backend knows about a run lives in files, so a new instance (after ``kill -9`` of the service) tells
the truth. Layout of ``{results_root}/{eval_id}/{run_id}/`` (the OpenCompass ``--work-dir``)::

    {timestamp}/...            OpenCompass output (what the parser reads)
    .budeval/                  budeval's own files (the parser ignores dot folders)
        submitted              created with O_EXCL: the run was accepted once (never started twice)
        spec.json              the run spec without the config text (no secret in it)
        config.py              the rendered config OpenCompass runs
        starting               created with O_EXCL by whoever starts the process (one starter wins)
        pid                    "{pid} {start ticks}" of the wrapper, leader of the run's own process group
        started                start time (epoch seconds) for the run's timeout
        environment.json       the run's interpreter, torch/CUDA/GPUs, host, captured by the run before OpenCompass
        output.log             OpenCompass stdout + stderr
        exit_code              written by the wrapper when OpenCompass exits (atomic rename)
        cancelled / timed_out  markers written before the process group is killed
        reported               the watcher delivered the terminal state (so a restart does not repeat it)

The wrapper is ``sh -c`` in its own session: it runs OpenCompass and records its exit code, so the run survives
the service and its exit code is known afterwards. OpenCompass's cwd is ``.budeval/`` so that its stray files
(``.cache/``, ``tmp/``) stay out of the output folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from budeval.backends.base import FailureClass, RunFinishedCallback, RunPhase, RunSpec, RunState
from budeval.backends.local_classify import _finished, _make_state, _tail
from budeval.backends.local_markers import (
    META,
    _create_exclusive,
    _group_has_members,
    _pid_alive,
    _proc_start_ticks,
    _Run,
    _write_atomic,
)
from budeval.backends.runenv import run_environment, secret_env_name
from budeval.config import Settings, credential_secret, process_environment
from budeval.engine.environment import CAPTURE_SCRIPT
from budeval.errors import BackendUnavailableError, ValidationError
from budeval.logs import get_logger
from budeval.schemas.ids import check_dns_label

#: Environment variable OpenCompass's OpenAI models read (``key='ENV'`` in the rendered config).
API_KEY_ENV = "OPENAI_API_KEY"
# Timing is settings: ``local_start_grace_s`` (how long a ``starting`` marker without a pid may exist before the
# start is considered lost), ``local_kill_grace_s`` (SIGTERM first; SIGKILL for what is left after it),
# ``local_poll_s`` (the watcher's pass interval).

# $1 python, $2 config, $3 work dir, $4 max workers, $5 the environment capture script (budeval.engine.environment:
# the run records its own interpreter, devices and host first). Exit code to a temp file then renamed: readers never
# see half.
_WRAPPER = (
    # An endpoint model's usage lines (budeval/engine/opencompass_plugin/budeval_usage.py) go to .budeval/usage/.
    'BUDEVAL_USAGE_DIR="$PWD/usage"; export BUDEVAL_USAGE_DIR; '
    '"$1" -c "$5" >environment.json.tmp 2>/dev/null && mv environment.json.tmp environment.json '
    "|| rm -f environment.json.tmp; "
    '"$1" -m opencompass.cli.main "$2" -w "$3" --max-num-workers "$4" >>output.log 2>&1; '
    'rc=$?; echo "$rc" > exit_code.tmp && mv exit_code.tmp exit_code'
)


class LocalBackend:
    """A :class:`~budeval.backends.base.JobBackend` running OpenCompass as local processes, at most N at a time."""

    name = "local"

    def __init__(self, settings: Settings, poll_s: float | None = None) -> None:
        self.settings = settings
        # Absolute: OpenCompass runs with cwd .budeval/, so a relative root would point elsewhere for it.
        self.root = settings.resolved_results_root().absolute()
        # A path is made absolute (the wrapper's cwd is the run's folder); a bare name is looked up on PATH.
        self.python = settings.resolved_opencompass_python()
        self.max_parallel = max(1, settings.max_parallel_runs)
        self.poll_s = settings.local_poll_s if poll_s is None else poll_s
        self._lock = threading.RLock()
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # reaped by poll(): no zombie looks alive

    # -- JobBackend ---------------------------------------------------------------------------------------------
    def work_dir(self, eval_id: str, run_id: str) -> Path:
        check_dns_label(eval_id, field="eval_id")
        check_dns_label(run_id, field="run_id")
        return self.root / eval_id / run_id

    def submit(self, spec: RunSpec) -> RunState:
        run = _Run(spec.eval_id, spec.run_id, self.work_dir(spec.eval_id, spec.run_id))
        if not self.python or not Path(self.python).exists():
            raise BackendUnavailableError(
                f"OpenCompass interpreter {self.python or '(unset)'!r} not found: run scripts/setup_opencompass.sh "
                "and set BUDEVAL_OPENCOMPASS_PYTHON"
            )
        self._secret_env(spec)  # before any file: a missing key fails the submit, not a half-made run
        run.meta.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if not run.has("submitted"):
                _write_atomic(run.file("config.py"), spec.config_text)
                _write_atomic(
                    run.file("spec.json"),
                    spec.model_copy(update={"config_text": ""}).model_dump_json(exclude={"config_text"}, indent=2),
                )
                if _create_exclusive(run.file("submitted"), f"{time.time():.6f}\n"):
                    get_logger(eval_id=spec.eval_id, run_id=spec.run_id).info("run queued", backend=self.name)
            self._pump()
            return self._state(run)

    def get(self, eval_id: str, run_id: str) -> RunState:
        run = _Run(eval_id, run_id, self.work_dir(eval_id, run_id))
        with self._lock:
            self._pump()
            return self._state(run)

    def cancel(self, eval_id: str) -> None:
        check_dns_label(eval_id, field="eval_id")
        folder = self.root / eval_id
        if not folder.is_dir():
            return
        with self._lock:
            runs = [self._run_at(p.parent.parent) for p in sorted(folder.glob(f"*/{META}/submitted"))]
            for run in runs:
                if self._state(run).finished:
                    continue
                _create_exclusive(run.file("cancelled"), f"{time.time():.6f}\n")
            pids = [p for p in (self._pid(run) for run in runs) if p is not None]
        for pid in pids:
            self._kill_group(pid)
        get_logger(eval_id=eval_id).info("evaluation cancelled", backend=self.name, runs=len(runs))

    def cleanup(self, eval_id: str, run_id: str) -> None:
        """Nothing to remove locally: the process is gone and every file is a result or its provenance."""
        self.work_dir(eval_id, run_id)

    def watch(self, on_finished: RunFinishedCallback) -> _Watcher:
        watcher = _Watcher(self, on_finished)
        watcher.start()
        return watcher

    # -- internals ------------------------------------------------------------------------------------------------
    def _run_at(self, work: Path) -> _Run:
        return _Run(work.parent.name, work.name, work)

    def all_runs(self) -> list[_Run]:
        if not self.root.is_dir():
            return []
        return [self._run_at(p.parent.parent) for p in self.root.glob(f"*/*/{META}/submitted")]

    def _secret_env(self, spec: RunSpec) -> dict[str, str]:
        source = spec.keyed_source()
        if source is None or source.api_key_secret is None:
            return {}
        var = secret_env_name(source.api_key_secret.name, source.api_key_secret.key)
        secret = credential_secret(var)
        if secret is None:
            # Named from the request alone (the variable of *this* reference): the answer says nothing of other
            # variables, and is the same whether or not anything else of that name exists.
            raise ValidationError(
                f"the API key of credential {source.api_key_secret.name!r} is not available to the local backend "
                f"(an operator sets {var} in the service's environment: docs/security.md)",
                field="model",
            )
        return {API_KEY_ENV: secret.get_secret_value()}

    def _pid(self, run: _Run) -> int | None:
        raw = run.read("pid")
        if not raw:
            return None
        try:
            return int(raw.split()[0])
        except ValueError:
            return None

    def _alive(self, run: _Run) -> bool:
        raw = run.read("pid")
        if not raw:
            return False
        parts = raw.split()
        try:
            pid = int(parts[0])
            ticks = int(parts[1]) if len(parts) > 1 else None
        except ValueError:
            return False
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            del self._children[pid]
            return False
        return _pid_alive(pid, ticks)

    def _kill_group(self, pid: int) -> None:
        """TERM the run's process group, then KILL whatever is left after a grace period."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                return
            deadline = time.monotonic() + (self.settings.local_kill_grace_s if sig == signal.SIGTERM else 2.0)
            while time.monotonic() < deadline:
                child = self._children.get(pid)
                if child is not None:
                    child.poll()
                try:
                    os.killpg(pid, 0)
                except (ProcessLookupError, PermissionError):
                    return
                if child is not None and child.returncode is not None and not _group_has_members(pid):
                    return
                time.sleep(0.05)

    def _pump(self) -> None:
        """Start queued runs while slots are free (oldest first); enforce run timeouts."""
        runs = self.all_runs()
        active = 0
        queued: list[tuple[float, _Run]] = []
        for run in runs:
            if run.has("exit_code") or run.has("cancelled"):
                continue
            if run.has("pid"):
                if self._alive(run):
                    active += 1
                    self._check_timeout(run)
                continue
            if run.has("starting"):
                active += 1  # another starter is between O_EXCL and pid: count it
                continue
            try:
                submitted = float((run.read("submitted") or "0").strip() or 0)
            except ValueError:
                submitted = 0.0
            queued.append((submitted, run))
        for _, run in sorted(queued, key=lambda q: (q[0], q[1].eval_id, q[1].run_id)):
            if active >= self.max_parallel:
                break
            if self._start(run):
                active += 1

    def _check_timeout(self, run: _Run) -> None:
        try:
            started = float((run.read("started") or "").strip())
            spec = json.loads(run.read("spec.json") or "{}")
            timeout_s = float(spec.get("timeout_s", 0))
        except (ValueError, json.JSONDecodeError):
            return
        if timeout_s > 0 and time.time() - started > timeout_s:
            if _create_exclusive(run.file("timed_out"), f"{time.time():.6f}\n"):
                get_logger(eval_id=run.eval_id, run_id=run.run_id).warning("run timed out", timeout_s=timeout_s)
            pid = self._pid(run)
            if pid is not None:
                self._kill_group(pid)

    def _start(self, run: _Run) -> bool:
        if not _create_exclusive(run.file("starting"), f"{time.time():.6f}\n"):
            return False
        if run.has("cancelled"):  # cancelled between the queue scan and now (another instance): never start it
            return False
        try:
            spec = RunSpec.model_validate({**json.loads(run.read("spec.json") or "{}"), "config_text": ""})
            # Read at start, not at submit: a queued run started by a restarted service still gets its key.
            key_env = self._secret_env(spec)
        except (ValueError, ValidationError) as exc:
            _write_atomic(run.file("output.log"), f"budeval: cannot start OpenCompass: {exc}\n")
            _write_atomic(run.file("exit_code"), "1\n")
            return False
        # Only what OpenCompass needs, and only the key this run asked for (budeval/backends/runenv.py).
        env = run_environment(process_environment(), self.settings.run_env_passthrough, key_env)
        gpus = spec.resources.gpus
        if gpus > 0 and "CUDA_VISIBLE_DEVICES" not in env and not Path("/dev/nvidia0").exists():
            # OpenCompass's LocalRunner asserts it sees num_gpus devices; on a host without GPUs, name ids so the
            # assertion holds and torch (finding no CUDA) runs the model on CPU.
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(gpus))
        argv = ["sh", "-c", _WRAPPER, "budeval-run", self.python, str(run.file("config.py")), str(run.work), "1"]
        argv.append(CAPTURE_SCRIPT)
        try:
            proc = subprocess.Popen(
                argv,
                cwd=run.meta,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # own session + process group: survives the service, killed as a group
            )
        except OSError as exc:
            _write_atomic(run.file("output.log"), f"budeval: cannot start OpenCompass: {exc}\n")
            _write_atomic(run.file("exit_code"), "127\n")
            return False
        self._children[proc.pid] = proc
        _write_atomic(run.file("started"), f"{time.time():.6f}\n")
        _write_atomic(run.file("pid"), f"{proc.pid} {_proc_start_ticks(proc.pid) or ''}".strip() + "\n")
        get_logger(eval_id=run.eval_id, run_id=run.run_id).info("run started", backend=self.name, pid=proc.pid)
        return True

    def _state(self, run: _Run) -> RunState:
        def state(
            phase: RunPhase, reason: FailureClass | None = None, message: str = "", excerpt: str = ""
        ) -> RunState:
            return _make_state(run, phase, reason, message, excerpt)

        if not run.has("submitted"):
            return state("unknown", message="no such run")
        running = run.has("pid") and self._alive(run)
        if run.has("cancelled"):
            if running:
                return state("running", message="cancelling")
            return state("cancelled", "cancelled", "cancelled on request")
        if run.has("exit_code"):
            return _finished(run)
        if running:
            return state("running")
        if run.has("pid"):
            # The wrapper is gone without an exit code: killed with its group, or the machine restarted.
            if run.has("timed_out"):
                return state("failed", "deadline_exceeded", "the run's timeout passed", _tail(run.file("output.log")))
            return state(
                "failed",
                "crash",
                "the OpenCompass process vanished without an exit code",
                _tail(run.file("output.log")),
            )
        starting = run.read("starting")
        if starting is not None:
            try:
                age = time.time() - float(starting.strip() or 0)
            except ValueError:
                age = self.settings.local_start_grace_s + 1
            if age > self.settings.local_start_grace_s:
                return state("failed", "crash", "the run was being started when its starter died")
            return state("pending", message="starting")
        return state("pending", message="queued")


class _Watcher:
    """One thread: starts queued runs as slots free and reports each run reaching a terminal phase once."""

    def __init__(self, backend: LocalBackend, on_finished: RunFinishedCallback) -> None:
        self.backend = backend
        self.on_finished = on_finished
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="budeval-local-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        log = get_logger(backend=self.backend.name)
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # the watcher must outlive any one bad run folder
                log.warning("local watch pass failed", error=str(exc)[:300])
            self._stop.wait(self.backend.poll_s)

    def poll_once(self) -> None:
        backend = self.backend
        with backend._lock:
            backend._pump()
            done = [(run, backend._state(run)) for run in backend.all_runs() if not run.has("reported")]
        for run, state in done:
            if not state.finished:
                continue
            try:
                self.on_finished(state)
            except Exception as exc:  # retried on the next pass: "reported" is written only after success
                get_logger(eval_id=run.eval_id, run_id=run.run_id).warning("on_finished failed", error=str(exc)[:300])
                continue
            _create_exclusive(run.file("reported"), f"{state.phase}\n")
