"""Issue 13, item 6 (part): an archive outage longer than the old fixed retry budget (8 attempts, about 2 minutes)
no longer fails the evaluation: the activities retry for ``activity_retry_window_s`` (default 30 min).

The real ``budeval serve`` archives to a real SeaweedFS S3 (scripts/s3_server.sh) through a TCP proxy the test cuts:
connections are refused while it is down, as for a crashed or unreachable S3. The outage lasts
``BUDEVAL_TEST_OUTAGE_S`` seconds, by default 300 (the issue's 5 minutes; a shorter value proves less: the old
budget ran out after about 2 minutes). After it the evaluation completes, with one score row per dataset and metric.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.service.serve_process import ServeProcess, serve_env
from tests.storage.conftest import s3_server, s3_state  # noqa: F401 (fixtures)
from tests.support import wait_until

OUTAGE_S = float(os.environ.get("BUDEVAL_TEST_OUTAGE_S", "300"))


class CutProxy:
    """Forwards 127.0.0.1:port to a target port; ``down()`` refuses and drops connections, ``up()`` restores."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it; close() alone would not
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.mark.timeout(OUTAGE_S + 900)
def test_an_archive_outage_longer_than_the_old_retry_budget_loses_nothing(
    tmp_path: Path, s3_server: dict[str, str]  # noqa: F811
) -> None:
    proxy = CutProxy(int(s3_server["BUDEVAL_S3_ENDPOINT"].rsplit(":", 1)[1]))
    proxy.up()
    env = serve_env(
        tmp_path, "process",
        BUDEVAL_ARCHIVE_URL=f"s3://outage-archive?endpoint=http://127.0.0.1:{proxy.port}",
        BUDEVAL_S3_ACCESS_KEY=s3_server["BUDEVAL_S3_ACCESS_KEY"],
        BUDEVAL_S3_SECRET_KEY=s3_server["BUDEVAL_S3_SECRET_KEY"],
        FAKE_OC_SLEEP="3",
    )
    served = ServeProcess(tmp_path, env).start()
    try:
        served.wait_ready(timeout=180)
        request = {"eval_id": "outage-1", "model": {"name": "m", "source": {"type": "huggingface",
                   "path": "/models/m"}}, "datasets": ["tiny_qa"], "timeout_s": 3600}
        published = served.cli("submit", "-", stdin=json.dumps(request))
        assert published.returncode == 0, published.stderr
        wait_until(lambda: list((tmp_path / "results" / "outage-1").glob("*/.budeval/pid")), timeout=120,
                   what="the run to start")
        proxy.down()
        down_since = time.monotonic()
        wait_until(lambda: any(e["type"].endswith(".progress") for e in served.events("outage-1")), timeout=180,
                   what="the run collected (the archive is next)")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))
        assert not [e for e in served.events("outage-1") if e["type"].endswith((".failed", ".completed"))], \
            "the evaluation ended while the archive was down"
        proxy.up()

        def ended() -> list[dict[str, object]]:
            return [e for e in served.events("outage-1") if e["type"].endswith((".failed", ".completed"))]

        final = wait_until(ended, timeout=300, what="the evaluation's end after the outage")
        assert final[0]["type"].endswith(".completed"), final
        body = served.api("GET", "/evals/outage-1/results").json()
        assert body["status"] == "completed" and body["scores"], body
        keys = Counter((s["run_id"], s["dataset"], s["metric"]) for s in body["scores"])
        assert max(keys.values()) == 1, keys  # no duplicate rows
    finally:
        served.stop()
        proxy.down()


@pytest.mark.timeout(900)
def test_an_archive_down_past_the_retry_window_ends_with_archive_pending_and_is_archived_when_s3_is_back(
    tmp_path: Path, s3_server: dict[str, str], s3_state: Path  # noqa: F811
) -> None:
    """Issue 13 item 5: past ``activity_retry_window_s`` (5 s here) the evaluation finishes with what is stored --
    ``completed`` with ``archive_pending`` -- instead of failing or staying ``running``; the real S3 server is then
    stopped and restarted with scripts/s3_server.sh (on new ports: the proxy follows it) and the service's housekeeping
    loop archives it and clears the flag. Nothing lost, no duplicate rows, one ``archived`` event."""
    from minio import Minio

    from tests.storage.conftest import _s3_env

    proxy = CutProxy(int(s3_server["BUDEVAL_S3_ENDPOINT"].rsplit(":", 1)[1]))
    proxy.up()
    env = serve_env(
        tmp_path, "process",
        BUDEVAL_ARCHIVE_URL=f"s3://pending-archive?endpoint=http://127.0.0.1:{proxy.port}",
        BUDEVAL_S3_ACCESS_KEY=s3_server["BUDEVAL_S3_ACCESS_KEY"],
        BUDEVAL_S3_SECRET_KEY=s3_server["BUDEVAL_S3_SECRET_KEY"],
        BUDEVAL_ACTIVITY_RETRY_WINDOW_S="5",
        BUDEVAL_HOUSEKEEPING_INTERVAL_S="2",
        FAKE_OC_SLEEP="3",
    )
    served = ServeProcess(tmp_path, env).start()
    restarted = False
    try:
        served.wait_ready(timeout=180)
        request = {"eval_id": "pending-1", "model": {"name": "m", "source": {"type": "huggingface",
                   "path": "/models/m"}}, "datasets": ["tiny_qa"], "timeout_s": 3600}
        assert served.cli("submit", "-", stdin=json.dumps(request)).returncode == 0
        wait_until(lambda: list((tmp_path / "results" / "pending-1").glob("*/.budeval/pid")), timeout=120,
                   what="the run to start")
        _s3_env(s3_state, "stop")  # the real server goes away

        def ended() -> list[dict[str, object]]:
            return [e for e in served.events("pending-1") if e["type"].endswith((".failed", ".completed"))]

        (final,) = wait_until(ended, timeout=300, what="the evaluation's end with the archive down")
        data: dict[str, object] = final["data"]  # type: ignore[assignment]
        assert final["type"].endswith(".completed") and data["status"] == "completed", final
        assert data["archive_pending"] is True and data["archive_url"] is None, data
        body = served.api("GET", "/evals/pending-1").json()
        assert body["status"] == "completed" and body["evaluation"]["archive_pending"] is True, body
        assert "archive_pending_reason" in body["evaluation"]["provenance"]
        before = served.api("GET", "/evals/pending-1/results").json()["scores"]
        assert before

        s3 = _s3_env(s3_state, "start")  # back, on new ports
        restarted = True
        s3_server.update(s3)  # the session's server, for the tests after this one
        proxy.target = int(s3["BUDEVAL_S3_ENDPOINT"].rsplit(":", 1)[1])

        def archived() -> dict[str, object] | None:
            record: dict[str, object] = served.api("GET", "/evals/pending-1").json()["evaluation"]
            return record if not record["archive_pending"] else None

        record = wait_until(archived, timeout=300, what="the housekeeping loop to archive it")
        assert record["status"] == "completed" and str(record["archive_url"]).startswith("s3://pending-archive/")
        assert "archive_pending_reason" not in record["provenance"]  # type: ignore[operator]
        client = Minio(s3["BUDEVAL_S3_ENDPOINT"].split("//", 1)[1], access_key=s3["BUDEVAL_S3_ACCESS_KEY"],
                       secret_key=s3["BUDEVAL_S3_SECRET_KEY"], secure=False)
        keys = [o.object_name for o in client.list_objects("pending-archive", prefix="pending-1/", recursive=True)]
        assert "pending-1/manifest.json" in keys and len(keys) > 1, keys
        after = served.api("GET", "/evals/pending-1/results").json()["scores"]
        assert after == before  # nothing lost
        counts = Counter((s["run_id"], s["dataset"], s["metric"]) for s in after)
        assert max(counts.values()) == 1, counts  # no duplicate rows
        kinds = [e["type"].rsplit(".", 1)[-1] for e in served.events("pending-1")]
        assert kinds.count("archived") == 1 and kinds.count("completed") == 1, kinds
    finally:
        served.stop()
        proxy.down()
        if not restarted:
            s3_server.update(_s3_env(s3_state, "start"))  # the session's server, for the tests after this one
