"""Group commit: callers that arrive while a batch is written share the next one; each gets its own result or error."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from budeval.storage.groupcommit import GroupCommit
from tests.support import wait_until


class _GatedWriter:
    """A write that blocks until released, so a test can line callers up behind it deterministically."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: Sequence[str]) -> list[str]:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(list(items))
        if self.fail_on is not None and self.fail_on in items:
            raise ConnectionError(f"store down while writing {self.fail_on}")
        return [item.upper() for item in items]


def _submit_in_threads(
    commit: GroupCommit[str, str], items: list[str]
) -> tuple[dict[str, object], list[threading.Thread]]:
    results: dict[str, object] = {}

    def call(item: str) -> None:
        try:
            results[item] = commit.submit(item)
        except Exception as exc:
            results[item] = exc

    threads = [threading.Thread(target=call, args=(item,)) for item in items]
    for t in threads:
        t.start()
    return results, threads


def test_callers_queued_behind_a_write_share_the_next_batch_and_get_their_own_results() -> None:
    writer = _GatedWriter()
    commit = GroupCommit(writer)
    first, first_threads = _submit_in_threads(commit, ["a"])
    assert writer.entered.wait(5)
    rest, threads = _submit_in_threads(commit, ["b", "c", "d", "e"])
    wait_until(lambda: len(commit._queue) == 4, timeout=5, what="four callers queued")
    writer.gate.set()
    for t in first_threads + threads:
        t.join(5)
    assert writer.batches == [["a"], sorted(writer.batches[1])] and sorted(writer.batches[1]) == ["b", "c", "d", "e"]
    assert first == {"a": "A"} and rest == {"b": "B", "c": "C", "d": "D", "e": "E"}
    assert commit.batch_sizes == [1, 4]


def test_a_failed_batch_fails_every_caller_in_it_and_the_next_submit_writes_again() -> None:
    writer = _GatedWriter(fail_on="c")
    commit = GroupCommit(writer)
    _, first_threads = _submit_in_threads(commit, ["a"])
    assert writer.entered.wait(5)
    results, threads = _submit_in_threads(commit, ["b", "c"])
    wait_until(lambda: len(commit._queue) == 2, timeout=5, what="two callers queued")
    writer.gate.set()
    for t in first_threads + threads:
        t.join(5)
    assert all(isinstance(results[i], ConnectionError) for i in ("b", "c")), results
    writer.fail_on = None
    assert commit.submit("f") == "F"


def test_batches_are_bounded() -> None:
    writer = _GatedWriter()
    commit = GroupCommit(writer, max_batch=2)
    _, first_threads = _submit_in_threads(commit, ["a"])
    assert writer.entered.wait(5)
    _, threads = _submit_in_threads(commit, ["b", "c", "d", "e", "f"])
    wait_until(lambda: len(commit._queue) == 5, timeout=5, what="five callers queued")
    writer.gate.set()
    for t in first_threads + threads:
        t.join(5)
    assert max(len(b) for b in writer.batches) == 2
    assert sorted(i for b in writer.batches for i in b) == ["a", "b", "c", "d", "e", "f"]


def test_a_wrong_number_of_results_is_an_error_not_a_silent_success() -> None:
    commit: GroupCommit[str, str] = GroupCommit(lambda items: [])
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        commit.submit("a")


class _Recorder:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        return [item.upper() for item in items]


def _submit_from_another_thread(commit: GroupCommit[str, str], item: str) -> None:
    thread = threading.Thread(target=commit.submit, args=(item,))
    thread.start()
    thread.join(5)


def test_under_load_a_writer_lingers_for_the_next_caller_and_both_share_one_batch() -> None:
    writer = _Recorder()
    commit: GroupCommit[str, str] = GroupCommit(writer, max_batch=2, linger_s=30.0)
    for i in range(7):  # items from two threads in quick succession: the store is busy
        if i % 2:
            _submit_from_another_thread(commit, f"p{i}")
        else:
            assert commit.submit(f"p{i}") == f"P{i}"
    assert all(len(b) == 1 for b in writer.batches)
    first, threads = _submit_in_threads(commit, ["x"])  # the eighth arrival: busy, so it waits for company
    wait_until(lambda: len(commit._queue) == 1, timeout=5, what="x queued")
    assert len(writer.batches) == 7  # x is not written alone
    second, more = _submit_in_threads(commit, ["y"])  # a full batch ends the wait at once (not after 30 s)
    for t in threads + more:
        t.join(5)
    assert writer.batches[-1] == ["x", "y"]
    assert first == {"x": "X"} and second == {"y": "Y"}


def test_one_thread_storing_in_a_loop_never_lingers() -> None:
    writer = _Recorder()
    commit: GroupCommit[str, str] = GroupCommit(writer, linger_s=30.0)
    for i in range(20):  # would take 30 s per item from the ninth on if it lingered
        assert commit.submit(f"i{i}") == f"I{i}"
    assert commit.batch_sizes == [1] * 20
    assert not commit._busy()
