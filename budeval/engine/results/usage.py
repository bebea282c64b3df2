"""An endpoint run's usage: the lines budeval's endpoint model appended during inference, summed.

Source: budeval/engine/opencompass_plugin/budeval_usage.py writes ``{work_dir}/.budeval/usage/usage-<pid>.jsonl``
(one JSON object per request: ``ok``, and ``prompt_tokens``/``completion_tokens``/``total_tokens`` when the endpoint
reported them); both backends point it there (``BUDEVAL_USAGE_DIR``). Lines accumulate over every pass of a run
(an OpenCompass ``-r`` rerun adds to them): the requests the run made, not the ones its final results needed.
"""

from __future__ import annotations

import json
from pathlib import Path

from budeval.schemas.results import RunUsage

#: The folder of usage files, relative to a run's work dir.
USAGE_DIR = Path(".budeval") / "usage"
#: At most this much of one usage file is read (a line is ~80 bytes: a million requests fit).
MAX_FILE_BYTES = 256 * 1024 * 1024
#: A token count above this in one request is not one (a garbage server's number; the OpenAI client takes any JSON
#: integer): ignored, so sums stay far inside the ``UInt64`` columns of ``run_usage`` (a million requests * 2**40).
MAX_TOKENS_PER_REQUEST = 2**40


def read_usage(work_dir: Path) -> RunUsage | None:
    """The summed usage of the run in ``work_dir``; None when it recorded none (no usage file: not an endpoint
    model). A line that is not a JSON object is skipped (a process killed mid-write leaves half a line); a token
    count is None unless at least one request reported it; a count that is not a count (not an int, negative, above
    :data:`MAX_TOKENS_PER_REQUEST`) is ignored."""
    folder = work_dir / USAGE_DIR
    files = sorted(folder.glob("usage-*.jsonl")) if folder.is_dir() else []
    if not files:
        return None
    requests = failed = 0
    tokens: dict[str, int | None] = {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}
    for path in files:
        try:
            with path.open("rb") as f:
                data = f.read(MAX_FILE_BYTES)
        except OSError:
            continue
        for raw in data.splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(line, dict):
                continue
            requests += 1
            if line.get("ok") is not True:
                failed += 1
            for name in tokens:
                value = line.get(name)
                if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS_PER_REQUEST:
                    tokens[name] = (tokens[name] or 0) + value
    return RunUsage(requests=requests, failed_requests=failed, **tokens)
