"""A judge end to end against the REAL OpenAI-compatible server (scripts/openai_server.sh): a custom QA dataset
scored ``judge`` is evaluated through the pub/sub topic by the real ``budeval serve`` (embedded sidecar, chDB, local
backend, OpenCompass 0.5.4 with its GenericLLMEvaluator), the same server answering as the evaluated model and as
the judge; then ``budeval rejudge`` with other judge settings makes a new evaluation linked to the first that asks
only the judge.

Inference calls of the evaluated model are counted by a counting proxy this test starts in front of the server
(the evaluated model's ``base_url``); the judge talks to the server directly, whose own log counts every request.

Runtime (2-core machine shared with other sessions): 15 min measured 2026-12-01 10:47-11:02 under a load of ~8 (the
server answered a judge prompt in ~30 s then; the first evaluation ~6 min, the re-judging ~7 min, setup 1 min).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from budeval.engine.judging import DEFAULT_TEMPLATE
from tests.conftest import OpenAIServer
from tests.service.serve_process import ServeProcess, serve_env

pytestmark = [pytest.mark.opencompass, pytest.mark.slow, pytest.mark.timeout(2400)]

QUESTIONS = [
    {"question": "What is 2+3? Reply with only the number.", "answer": "5"},
    {"question": "What is the capital of France? Reply with one word.", "answer": "Paris"},
    {"question": "How many legs does a spider have? Reply with only the number.", "answer": "8"},
]
OTHER_TEMPLATE = (
    "Question: {question}\nReference answer: {answer}\nStudent answer: {prediction}\n"
    "Does the student answer match the reference? Answer A for yes or B for no."
)


class CountingProxy:
    """Forwards every request to ``target`` (an OpenAI-compatible base URL's origin) and counts the POSTs to
    ``/v1/chat/completions`` -- the evaluated model's inference calls."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.calls = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.command == "POST" and self.path.rstrip("/").endswith("/chat/completions"):
                    with proxy._lock:
                        proxy.calls += 1
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = httpx.request(self.command, proxy.target + self.path, content=body, headers=headers,
                                       timeout=600)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _forward

            def log_message(self, *args: Any) -> None:  # quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(openai_server: OpenAIServer) -> Iterator[CountingProxy]:
    origin = openai_server.base_url.rsplit("/v1", 1)[0]
    counting = CountingProxy(origin)
    try:
        yield counting
    finally:
        counting.close()


@pytest.fixture
def served(opencompass_env: dict[str, str], tmp_path: Path) -> Iterator[ServeProcess]:
    model = Path(opencompass_env["BUDEVAL_MODEL_PATH"])
    data_dir = tmp_path / "data"
    (data_dir / "datasets").mkdir(parents=True)
    (data_dir / "datasets" / "judged_qa.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    env = serve_env(
        data_dir,
        "embedded",
        BUDEVAL_OPENCOMPASS_PYTHON=opencompass_env["BUDEVAL_OPENCOMPASS_PYTHON"],
        BUDEVAL_MODELS_ROOT=str(model.parent),
        BUDEVAL_ENDPOINT_ALLOWED_NETWORKS="127.0.0.0/8",  # the model server and the proxy on this machine
    )
    process = ServeProcess(data_dir, env).start().wait_ready(timeout=180)
    try:
        yield process
    finally:
        process.stop()


def _endpoint(name: str, base_url: str, server: OpenAIServer, tokenizer: str) -> dict[str, Any]:
    return {"name": name, "source": {"type": "openai", "base_url": base_url, "model": server.model,
                                     "tokenizer_path": tokenizer}}


def test_a_real_judge_scores_a_custom_qa_dataset_then_rejudge_asks_only_the_judge(
    served: ServeProcess, openai_server: OpenAIServer, proxy: CountingProxy, opencompass_env: dict[str, str],
    tmp_path: Path,
) -> None:
    tokenizer = opencompass_env["BUDEVAL_MODEL_PATH"]
    judge = _endpoint("smollm2-judge", openai_server.base_url, openai_server, tokenizer)
    request = {
        "eval_id": "judged-1",
        "model": _endpoint("smollm2-endpoint", proxy.base_url, openai_server, tokenizer),
        "datasets": [{"name": "judged_qa", "path": str(served.data_dir / "datasets" / "judged_qa.jsonl"),
                      "kind": "qa", "scoring": "judge"}],
        "judge": {"model": judge, "max_out_len": 8},
        "generation": {"max_out_len": 24, "batch_size": 4},
        "timeout_s": 1800,
    }
    (tmp_path / "request.json").write_text(json.dumps(request))
    server_before = openai_server.requests()
    done = served.cli("submit", str(tmp_path / "request.json"), "--wait", "--timeout", "1500", timeout=1600)
    assert done.returncode == 0 and "judged-1: completed" in done.stdout, done.stdout + done.stderr + served.tail()
    assert proxy.calls == len(QUESTIONS)  # the evaluated model answered each question once
    assert openai_server.requests() - server_before == 2 * len(QUESTIONS)  # ... and the judge graded each answer

    first = served.api("GET", "/evals/judged-1").json()
    scores = {(s["dataset"], s["metric"]): s["score"] for s in first["scores"]}
    assert 0 <= scores[("judged_qa", "accuracy")] <= 100 and ("judged_qa", "judged") in scores
    evaluation = first["evaluation"]
    template_sha = hashlib.sha256(DEFAULT_TEMPLATE.encode()).hexdigest()
    assert evaluation["judge"] == f"smollm2-judge@{openai_server.base_url}#{openai_server.model}/t:{template_sha[:12]}"
    assert evaluation["rejudge_of"] is None
    provenance = evaluation["provenance"]
    assert provenance["judge"]["template_sha256"] == template_sha
    assert provenance["identity"]["judge"]["settings"]["max_out_len"] == 8

    # Re-judge with other judge settings (another prompt, shorter answers): a new evaluation, no inference.
    new_judge = {"model": judge, "template": OTHER_TEMPLATE, "max_out_len": 4}
    server_before, proxy_before = openai_server.requests(), proxy.calls
    rejudged = served.cli("rejudge", "judged-1", "--judge", json.dumps(new_judge), "--new-id", "judged-1-rj",
                          "--wait", "--timeout", "1500", timeout=1600)
    assert rejudged.returncode == 0 and "judged-1-rj: completed" in rejudged.stdout, (
        rejudged.stdout + rejudged.stderr + served.tail()
    )
    assert "re-judged the stored predictions of judged-1" in rejudged.stdout
    assert proxy.calls == proxy_before  # not one call to the evaluated model
    assert openai_server.requests() - server_before == len(QUESTIONS)  # only the judge, once per example

    second = served.api("GET", "/evals/judged-1-rj").json()
    assert second["status"] == "completed"
    assert second["evaluation"]["rejudge_of"] == "judged-1"
    other_sha = hashlib.sha256(OTHER_TEMPLATE.encode()).hexdigest()
    assert second["evaluation"]["judge"].endswith(f"/t:{other_sha[:12]}")
    assert second["evaluation"]["params_hash"] != evaluation["params_hash"] or not evaluation["params_hash"]
    status = served.cli("status", "judged-1-rj")
    assert "re-judged the predictions of: judged-1" in status.stdout and "judge: smollm2-judge@" in status.stdout

    served.stop()  # chDB: one process per data directory; the CLI reads the same store afterwards
    examples = {}
    for eval_id in ("judged-1", "judged-1-rj"):
        shown = served.cli("results", eval_id, "--examples", "5", "--json")
        assert shown.returncode == 0, shown.stderr
        examples[eval_id] = json.loads(shown.stdout)["examples"]
    a, b = examples["judged-1"], examples["judged-1-rj"]
    assert len(a) == len(b) == len(QUESTIONS)
    # The same stored predictions, each with its judge's verdict and raw answer, stored beside it.
    assert [e["prediction"] for e in a] == [e["prediction"] for e in b]
    assert all(e["prediction"].strip() for e in a)
    assert all(e["judge_answer"].strip() and e["correct"] is not None for e in a + b), a + b
    table = served.cli("results", "judged-1-rj", "--examples", "5")
    assert "judge said" in table.stdout, table.stdout
