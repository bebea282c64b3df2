"""LocalBackend with a fake OpenCompass interpreter: states, detached processes, restart, cancel, limits, watch."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from budeval.backends.base import RunSpec, RunState
from budeval.backends.local import LocalBackend
from budeval.backends.runenv import secret_env_name
from budeval.config import Settings
from budeval.engine.environment import read_environment
from budeval.errors import BackendUnavailableError, UnsafeIdError, ValidationError
from budeval.schemas.request import ModelSpec
from tests.support import in_threads, wait_until

FAKE = Path(__file__).with_name("fake_opencompass.py")
HF_MODEL: dict[str, object] = {"name": "m", "source": {"type": "huggingface", "path": "/models/m"}}
API_MODEL: dict[str, object] = {
    "name": "api",
    "source": {
        "type": "openai",
        "base_url": "http://127.0.0.1:9/v1/",
        "model": "x",
        "api_key_secret": {"name": "llm-keys", "key": "api-key"},
    },
}


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    exe = tmp_path / "bin" / "python"
    exe.parent.mkdir()
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    exe.chmod(0o755)
    return exe


@pytest.fixture
def make_backend(tmp_path: Path, fake_python: Path) -> Iterator[Callable[..., LocalBackend]]:
    made: list[LocalBackend] = []

    def make(max_parallel: int = 2) -> LocalBackend:
        settings = Settings(
            data_dir=tmp_path / "data",
            results_root=tmp_path / "results",
            opencompass_python=str(fake_python),
            max_parallel_runs=max_parallel,
        )
        backend = LocalBackend(settings, poll_s=0.1)
        made.append(backend)
        return backend

    yield make
    # Never leave a sleeping fake behind, whatever the test did.
    for backend in made:
        for run in backend.all_runs():
            pid = backend._pid(run)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


def spec(
    mode: str, run_id: str = "r0", eval_id: str = "e1", model: dict[str, object] | None = None, **kw: object
) -> RunSpec:
    return RunSpec(
        eval_id=eval_id,
        run_id=run_id,
        config_text=f"# fake: {mode}\nmodels = []\n",
        model=ModelSpec.model_validate(model or HF_MODEL),
        datasets=["tiny_qa"],
        **kw,  # type: ignore[arg-type]
    )


wait_for = partial(wait_until, timeout=60.0)


def wait_finished(backend: LocalBackend, eval_id: str = "e1", run_id: str = "r0") -> RunState:
    states: list[RunState] = []

    def done() -> bool:
        states.append(backend.get(eval_id, run_id))
        return states[-1].finished

    wait_for(done, f"{eval_id}/{run_id} to finish")
    return states[-1]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def test_success_copies_output_and_keeps_own_files_apart(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    first = backend.submit(spec("copy qa_chat"))
    assert first.phase in ("pending", "running")
    state = wait_finished(backend)
    assert state.phase == "succeeded", state
    assert state.reason_class is None
    work = backend.work_dir("e1", "r0")
    assert work == backend.root / "e1" / "r0"
    assert list(work.glob("*/summary/summary_*.csv"))
    meta = work / ".budeval"
    assert (meta / "config.py").read_text().startswith("# fake: copy qa_chat")
    assert (meta / "exit_code").read_text().strip() == "0"
    assert "fake opencompass: copy" in (meta / "output.log").read_text()
    assert json.loads((meta / "env.json").read_text())["cwd"] == str(meta)
    assert "config_text" not in json.loads((meta / "spec.json").read_text())
    # The run captured its own environment first, with its own interpreter (the fake runs the real capture script).
    captured = read_environment(work)
    assert captured["python"] == ".".join(map(str, sys.version_info[:3])) and captured["hostname"]
    assert captured["captured_at"] <= (meta / "exit_code").stat().st_mtime
    assert not list(meta.glob("environment.json.tmp"))


def test_exit_zero_without_summary_is_no_scores(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    backend.submit(spec("exit0"))
    state = wait_finished(backend)
    assert (state.phase, state.reason_class) == ("failed", "no_scores")
    assert "no timestamp folder" in state.message


def test_aborted_fixture_is_no_scores(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    backend.submit(spec("copy aborted"))
    state = wait_finished(backend)
    assert (state.phase, state.reason_class) == ("failed", "no_scores")


def test_error_lines_without_scores_are_task_errors(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    backend.submit(spec("tasks_fail"))
    state = wait_finished(backend)
    assert (state.phase, state.reason_class) == ("failed", "task_errors")
    assert "fake model error" in state.log_excerpt
    assert "logs/infer/m/tiny_qa.out" in state.log_excerpt


def test_partial_failure_still_succeeds_with_an_excerpt(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    backend.submit(spec("copy two_datasets_one_fails"))
    state = wait_finished(backend)
    assert state.phase == "succeeded"  # scores exist: the parser marks the failed dataset
    assert state.message == "some tasks failed"
    assert "bad_eval_ds" in state.log_excerpt


def test_nonzero_exit_is_crash_with_log_tail(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    backend.submit(spec("crash"))
    state = wait_finished(backend)
    assert (state.phase, state.reason_class) == ("failed", "crash")
    assert "code 3" in state.message
    assert "fake crash for the test" in state.log_excerpt


def test_double_submit_starts_once_even_from_two_instances(make_backend: Callable[..., LocalBackend]) -> None:
    a, b = make_backend(), make_backend()
    s = spec("sleep 0.5 then qa_chat")
    states = [a.submit(s), b.submit(s), a.submit(s)]
    assert all(st.phase in ("pending", "running") for st in states)
    assert wait_finished(b).phase == "succeeded"
    assert a.submit(s).phase == "succeeded"  # adopting a finished run does not start it again
    invocations = (a.work_dir("e1", "r0") / ".budeval" / "invocations").read_text().split()
    assert len(invocations) == 1


def test_concurrent_submits_from_threads_start_once(make_backend: Callable[..., LocalBackend]) -> None:
    backends = [make_backend() for _ in range(4)]
    s = spec("sleep 0.3 then qa_chat")
    assert in_threads(lambda bk: bk.submit(s), backends) == []
    assert wait_finished(backends[0]).phase == "succeeded"
    assert len((backends[0].work_dir("e1", "r0") / ".budeval" / "invocations").read_text().split()) == 1


def test_run_survives_kill_9_of_the_service_and_a_new_instance_tells_the_truth(
    tmp_path: Path, fake_python: Path, make_backend: Callable[..., LocalBackend]
) -> None:
    s = spec("sleep 3 then qa_chat")
    service = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from budeval.backends.base import RunSpec
        from budeval.backends.local import LocalBackend
        from budeval.config import Settings
        settings = Settings(data_dir=Path({str(tmp_path / "data")!r}), results_root=Path({str(tmp_path / "results")!r}),
                            opencompass_python={str(fake_python)!r})
        LocalBackend(settings).submit(RunSpec.model_validate_json(sys.stdin.read()))
        print("submitted", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", service], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(s.model_dump_json())
    proc.stdin.close()
    for line in proc.stdout:  # log lines come first
        if line.strip() == "submitted":
            break
    else:
        raise AssertionError("the service did not submit")
    proc.kill()  # SIGKILL: no cleanup in the service
    proc.wait()

    fresh = make_backend()
    assert fresh.get("e1", "r0").phase == "running"
    state = wait_finished(fresh)
    assert state.phase == "succeeded"
    assert len((fresh.work_dir("e1", "r0") / ".budeval" / "invocations").read_text().split()) == 1


def test_cancel_kills_the_process_group(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    backend.submit(spec("sleep 300"))
    meta = backend.work_dir("e1", "r0") / ".budeval"
    # Non-empty, not only present: the fake's write_text creates the file before it writes the pid.
    wait_for(lambda: (meta / "child_pid").exists() and (meta / "child_pid").read_text().strip(), "the fake's child")
    child = int((meta / "child_pid").read_text())
    assert alive(child)
    backend.cancel("e1")
    state = wait_finished(backend)
    assert (state.phase, state.reason_class) == ("cancelled", "cancelled")
    wait_for(lambda: not alive(child), "the grandchild to die with its group", timeout=10)
    backend.cancel("e1")  # idempotent
    assert backend.get("e1", "r0").phase == "cancelled"


def test_cancel_of_a_queued_run_never_starts_it(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(max_parallel=1)
    backend.submit(spec("sleep 300", eval_id="busy"))
    assert backend.submit(spec("copy qa_chat", eval_id="e1")).phase == "pending"
    backend.cancel("e1")
    assert backend.get("e1", "r0").phase == "cancelled"
    backend.cancel("busy")
    wait_finished(backend, "busy")
    assert backend.get("e1", "r0").phase == "cancelled"
    assert not (backend.work_dir("e1", "r0") / ".budeval" / "invocations").exists()


def test_concurrency_limit_queues_and_starts_when_a_slot_frees(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(max_parallel=1)
    assert backend.submit(spec("sleep 1 then qa_chat", run_id="r0")).phase == "running"
    second = backend.submit(spec("copy qa_chat", run_id="r1"))
    assert (second.phase, second.message) == ("pending", "queued")
    assert not (backend.work_dir("e1", "r1") / ".budeval" / "pid").exists()
    assert wait_finished(backend, run_id="r0").phase == "succeeded"
    assert wait_finished(backend, run_id="r1").phase == "succeeded"


def test_watch_reports_each_terminal_run_once(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(max_parallel=1)
    seen: list[RunState] = []
    lock = threading.Lock()

    def on_finished(state: RunState) -> None:
        with lock:
            seen.append(state)

    watch = backend.watch(on_finished)
    try:
        backend.submit(spec("copy qa_chat", run_id="r0"))
        backend.submit(spec("exit0", run_id="r1"))  # queued: the watcher must start it
        wait_for(lambda: len(seen) >= 2, "two reports")
        time.sleep(0.5)  # several more watcher passes
    finally:
        watch.stop()
    assert sorted((s.run_id, s.phase) for s in seen) == [("r0", "succeeded"), ("r1", "failed")]
    again: list[RunState] = []
    second = make_backend().watch(again.append)  # a restarted service does not report them again
    time.sleep(0.5)
    second.stop()
    assert again == []


def test_watch_reports_runs_that_finished_while_nobody_watched(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    backend.submit(spec("exit0"))
    wait_finished(backend)
    seen: list[RunState] = []
    watch = make_backend().watch(seen.append)
    try:
        wait_for(lambda: len(seen) == 1, "the report of an earlier finish")
    finally:
        watch.stop()
    assert seen[0].reason_class == "no_scores"


def test_timeout_kills_and_reports_deadline_exceeded(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    backend.submit(spec("sleep 300", timeout_s=1))
    state = wait_finished(backend)
    assert (state.phase, state.reason_class) == ("failed", "deadline_exceeded")


def test_api_key_goes_only_to_the_process_environment(
    make_backend: Callable[..., LocalBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-test-not-a-real-key-123"
    var = secret_env_name("llm-keys", "api-key")
    assert var == "BUDEVAL_SECRET_LLM_KEYS_API_KEY"
    monkeypatch.setenv(var, key)
    monkeypatch.setenv("OPENAI_API_KEY", "the-service-own-key")  # must not leak into runs that did not ask
    backend = make_backend()
    backend.submit(spec("copy qa_chat", model=API_MODEL))
    backend.submit(spec("copy qa_chat", run_id="r1"))
    wait_finished(backend)
    wait_finished(backend, run_id="r1")
    meta = backend.work_dir("e1", "r0") / ".budeval"
    assert json.loads((meta / "env.json").read_text())["key_sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert json.loads((backend.work_dir("e1", "r1") / ".budeval" / "env.json").read_text())["key_sha256"] is None
    for path in backend.root.rglob("*"):
        if path.is_file():
            assert key not in path.read_text(errors="replace"), path


def test_missing_api_key_fails_the_submit_clearly(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    with pytest.raises(ValidationError, match="BUDEVAL_SECRET_LLM_KEYS_API_KEY"):
        backend.submit(spec("copy qa_chat", model=API_MODEL))
    assert backend.get("e1", "r0").phase == "unknown"


def test_gpu_request_on_a_cpu_host_names_device_ids(make_backend: Callable[..., LocalBackend]) -> None:
    if Path("/dev/nvidia0").exists() or "CUDA_VISIBLE_DEVICES" in os.environ:
        pytest.skip("host has GPUs or pins devices itself")
    backend = make_backend()
    backend.submit(spec("copy qa_chat", resources={"gpus": 2}))
    wait_finished(backend)
    env = json.loads((backend.work_dir("e1", "r0") / ".budeval" / "env.json").read_text())
    assert env["cuda_visible_devices"] == "0,1"


def test_unknown_run_and_unsafe_ids(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    assert backend.get("nope", "r0").phase == "unknown"
    with pytest.raises(UnsafeIdError):
        backend.get("../etc", "r0")
    backend.cancel("nope")  # nothing to cancel: no error
    backend.cleanup("nope", "r0")


def test_missing_interpreter_is_backend_unavailable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, opencompass_python=str(tmp_path / "no-python"))
    with pytest.raises(BackendUnavailableError, match="setup_opencompass"):
        LocalBackend(settings).submit(spec("exit0"))


def test_queued_run_reads_its_key_when_it_starts(
    make_backend: Callable[..., LocalBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    var = secret_env_name("llm-keys", "api-key")
    monkeypatch.setenv(var, "sk-first")
    backend = make_backend(max_parallel=1)
    backend.submit(spec("sleep 300", eval_id="busy"))
    assert backend.submit(spec("copy qa_chat", model=API_MODEL)).phase == "pending"
    monkeypatch.delenv(var)  # e.g. a restarted service without the secret
    backend.cancel("busy")
    state = wait_finished(backend)
    assert (state.phase, state.reason_class) == ("failed", "crash")
    assert var in state.log_excerpt
    assert not (backend.work_dir("e1", "r0") / ".budeval" / "invocations").exists()


def test_relative_results_root_still_works(tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=Path("data"), results_root=Path("rel-results"), opencompass_python=str(fake_python))
    backend = LocalBackend(settings, poll_s=0.1)
    backend.submit(spec("copy qa_chat"))
    assert wait_finished(backend).phase == "succeeded"
    assert list((tmp_path / "rel-results" / "e1" / "r0").glob("*/summary/summary_*.csv"))
