"""Everyday use of the command: ``--version``, ``submit`` with nothing to talk to, ``serve``'s own options, plain
paths where a URL is expected, and ``budeval suites``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from budeval import __version__
from budeval.storage.archive_folder import FolderArchive
from budeval.storage.factory import as_archive_url, as_store_dsn, open_archive
from tests.cli.support import REPO
from tests.support import wait_until


def _cli(tmp_path: Path, *args: str, stdin: str | None = None, timeout: float = 120,
         **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BUDEVAL_", "DAPR_"))}
    base.update(BUDEVAL_DATA_DIR=str(tmp_path / "data"), HOME=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-m", "budeval.cli.main", *args], env=base, input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)


def test_version_on_the_command_and_its_subcommands(tmp_path: Path) -> None:
    for args in (["--version"], ["results", "--version"], ["datasets", "--version"]):
        done = _cli(tmp_path, *args)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"budeval {__version__} ("), done.stdout


def test_submit_with_no_service_fails_within_seconds_not_at_its_timeout(tmp_path: Path) -> None:
    # The default --timeout is an hour: the subprocess timeout (60 s) fails this test if submit waits for it.
    done = _cli(tmp_path, "submit", "-", stdin='{"eval_id": "a"}', timeout=60, BUDEVAL_CLIENT_UNREACHABLE_S="2")
    assert done.returncode == 1
    assert done.stderr.startswith("budeval: error: gave up waiting: no running service found"), done.stderr
    assert "budeval serve" in done.stderr
    # A serve.json left by a service that died is no running service either.
    data = tmp_path / "data"
    data.mkdir()
    (data / "serve.json").write_text(json.dumps({"pid": 2**22 + 12345, "api_url": "http://127.0.0.1:9",
                                                 "dapr_http_port": 9}))
    stale = _cli(tmp_path, "submit", "-", stdin='{"eval_id": "a"}', timeout=60, BUDEVAL_CLIENT_UNREACHABLE_S="2")
    assert stale.returncode == 1 and "gave up waiting: no running service found" in stale.stderr, stale.stderr
    assert "process 4206649 is gone" in stale.stderr, stale.stderr
    # daprd named but not there: the same.
    daprd = _cli(tmp_path, "submit", "-", stdin='{"eval_id": "a"}', timeout=60, DAPR_HTTP_PORT="9",
                 BUDEVAL_CLIENT_UNREACHABLE_S="2")
    assert daprd.returncode == 1 and "nothing answers at http://127.0.0.1:9" in daprd.stderr


def test_a_stale_serve_json_never_sends_to_whatever_now_listens_on_its_ports(tmp_path: Path) -> None:
    """A service killed without cleanup leaves serve.json; its ports may now be another program's (another data
    dir's `budeval serve`): submit must not publish there, status must not read from there."""
    seen: list[str] = []

    class Anything(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Anything)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        data = tmp_path / "data"
        data.mkdir()
        (data / "serve.json").write_text(json.dumps({"pid": 2**22 + 12345, "api_url": f"http://127.0.0.1:{port}",
                                                     "dapr_http_port": port}))
        done = _cli(tmp_path, "submit", "-", stdin='{"eval_id": "a"}', timeout=60, BUDEVAL_CLIENT_UNREACHABLE_S="2",
                    BUDEVAL_PORT="9")
        status = _cli(tmp_path, "status", "a", timeout=60, BUDEVAL_PORT="9")
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 1 and "no running service found" in done.stderr, (done.stdout, done.stderr)
    assert status.returncode == 1 and "http://127.0.0.1:9 " in status.stderr, status.stderr
    assert seen == [], seen


def test_serve_options_override_the_environment_and_it_says_where_things_are(tmp_path: Path) -> None:
    data = tmp_path / "flagged"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUDEVAL_", "DAPR_"))}
    env.update(HOME=str(tmp_path), BUDEVAL_DATA_DIR=str(tmp_path / "from-env"), BUDEVAL_PORT="1",
               BUDEVAL_HOST="0.0.0.0", BUDEVAL_SIDECAR="embedded")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "budeval.cli.main", "serve", "--host", "127.0.0.1",
                                 "--port", "0", "--data-dir", str(data)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=REPO)
    try:
        wait_until(lambda: (data / "serve.json").is_file() or proc.poll() is not None, timeout=180,
                   what="serve.json")
        assert proc.poll() is None, log.read_text()
        info = json.loads((data / "serve.json").read_text())
        assert info["api_url"].startswith("http://127.0.0.1:") and not info["api_url"].endswith(":1")
        assert info["store"] == f"chdb://{data / 'clickhouse'}"
        assert httpx.get(info["api_url"] + "/healthz", timeout=10).status_code == 200
        assert not (tmp_path / "from-env").exists()
        serving = next(json.loads(line) for line in log.read_text().splitlines()
                       if line.startswith("{") and '"serving"' in line)
        assert serving["api"] == info["api_url"] and serving["ui"] == info["api_url"] + "/ui/" == info["ui_url"]
        assert serving["data_dir"] == str(data) and serving["archive"] == (data / "archive").as_uri()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)


def test_plain_paths_are_accepted_where_a_store_or_archive_url_is(tmp_path: Path) -> None:
    assert as_archive_url(str(tmp_path / "arch")) == (tmp_path / "arch").as_uri()
    assert as_archive_url("s3://bucket/x?endpoint=http://h:9000") == "s3://bucket/x?endpoint=http://h:9000"
    assert as_store_dsn(str(tmp_path / "ch")) == f"chdb://{tmp_path / 'ch'}"
    assert as_store_dsn("http://u:p@h:8123/db") == "http://u:p@h:8123/db"
    archive = open_archive(str(tmp_path / "arch"))
    assert isinstance(archive, FolderArchive)
    done = _cli(tmp_path, "results", "nope-1", "--store", str(tmp_path / "ch"))
    assert done.returncode == 1 and "no evaluation 'nope-1' in the store" in done.stderr, done.stderr
    assert (tmp_path / "ch").is_dir()


def test_suites_lists_bundled_and_operator_suites_with_their_datasets(tmp_path: Path) -> None:
    mine = tmp_path / "suites"
    mine.mkdir()
    (mine / "mine.yaml").write_text("name: mine\ndescription: just mcq\ndatasets: [tiny_mcq]\n")
    done = _cli(tmp_path, "suites", "--json", BUDEVAL_SUITES_PATH=str(mine))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    by_name = {s["name"]: s for s in doc["suites"]}
    assert {"light", "standard", "heavy", "mine"} <= set(by_name)
    assert by_name["mine"]["datasets"] == [{"name": "tiny_mcq", "kind": "bundled"}]
    assert by_name["mine"]["source"] == str(mine / "mine.yaml")
    assert {"name": "gsm8k_gen", "kind": "stock"} in by_name["heavy"]["datasets"]
    text = _cli(tmp_path, "suites", BUDEVAL_SUITES_PATH=str(mine)).stdout
    assert "heavy" in text and "gsm8k_gen" in text and str(mine) in text
