"""Stands in for the OpenCompass venv's python in the security tests, called as the local backend calls it:
``RUNNER -m opencompass.cli.main CONFIG -w WORK_DIR --max-num-workers N``.

It records what a run could see and do: its whole environment goes to ``WORK_DIR/.budeval/run-env.json`` (a test
folder), and for an endpoint model it calls ``{openai_api_base}/chat/completions`` with ``OPENAI_API_KEY`` as
OpenCompass would (the fake endpoint records the headers). A config whose model name contains ``leaky`` prints
credential-looking lines and exits 1 (the failure excerpt must arrive masked). Otherwise it copies the committed
OpenCompass output named by ``$FAKE_OC_FIXTURE`` so the run finishes with real files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import urllib.request
from pathlib import Path


def main() -> int:
    args = sys.argv[1:]
    config, work = Path(args[2]), Path(args[args.index("-w") + 1])
    (work / ".budeval" / "run-env.json").write_text(json.dumps(dict(os.environ)))
    text = config.read_text()
    if "leaky" in text:
        print("Traceback (most recent call last):")
        print("openai.AuthenticationError: Authorization: Bearer sk-live-0123456789abcdef rejected")
        print("ValueError: connect to https://admin:hunter2pass@db.internal:5432 failed, password=hunter2pass")
        return 1
    base = re.search(r"openai_api_base='([^']+)'", text)
    if base:
        key = os.environ.get("OPENAI_API_KEY", "")
        request = urllib.request.Request(
            base.group(1).rstrip("/") + "/chat/completions", data=b"{}", method="POST",
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        opener.open(request, timeout=30).read()
    fixture = os.environ.get("FAKE_OC_FIXTURE")
    if fixture:
        for ts in Path(fixture).glob("2*"):
            shutil.copytree(ts, work / ts.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
