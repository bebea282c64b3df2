"""The scores in ``results/{model}/{dataset}.json``: every top-level numeric metric, and the ``error`` an evaluator
returned instead of scores.

Source: OpenCompass 0.5.4 ``tasks/openicl_eval.py`` (``OpenICLEvalTask._save_results``: ``mmengine.dump(result,
indent=4, ensure_ascii=False)``; ``result`` is the evaluator's dict: metric name -> number, optionally ``details``
and extra keys such as ``extract_rate`` or ``correct_bpb`` written after it; an evaluator that fails returns
``{"error": "..."}``, which the summarizer shows as ``-``). Python's json writes ``NaN``/``Infinity`` for non-finite
floats. Nested values (``details``, ``cascade_stats``, per-replica rollouts) are not scores.

Files written with ``indent=4`` are read without decoding their (possibly huge) ``details``: a top-level member is a
line starting with exactly four spaces and a quote (JSON strings hold no raw newline; deeper levels are indented
further), so the scalar members are found with one regex. Anything else is decoded whole (small) or streamed.
"""

from __future__ import annotations

import json
import math
import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from budeval.engine.results.jsonstream import JsonStream
from budeval.engine.results.loading import load_small
from budeval.errors import ResultParseError

#: A top-level scalar member of an indent=4 JSON object: ``    "key": value,``.
_TOP_MEMBER = re.compile(rb'^    "((?:[^"\\\n]|\\.)*)": ([^\[{\n][^\n]*?),?\r?$', re.M)
ERROR_KEY = "error"
#: Keys that are not metrics even when numeric: OpenCompass's own bookkeeping and the default summarizer's
#: ``METRIC_BLACKLIST`` (``summarizers/default.py``: ``bp``, ``sys_len``, ``ref_len``, ``type``).
NOT_METRICS = frozenset({"type", "details", "bp", "sys_len", "ref_len"})
MAX_REASON = 500


@dataclass
class ResultScores:
    """``metrics``: (name, score or None, reason) in file order; a score is None with a reason when it is NaN or
    infinite. ``error``: the evaluator's error message, when it returned one instead of (or beside) scores."""

    metrics: list[tuple[str, float | None, str | None]] = field(default_factory=list)
    error: str | None = None


def read_result_scores(path: Path, display: str) -> ResultScores:
    """Scores of one results file. Raises ResultParseError (file and line) when it is not a complete JSON object.

    An ``indent=4`` file (OpenCompass's) is scanned through a memory map, so a results file of hundreds of MB (its
    ``details`` repeat every prediction) is never held in memory; it must end with the top-level ``}`` at the start of
    a line -- a file cut after a details item ends indented, and is refused like any truncated file.
    """
    with path.open("rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        head = f.read(10)
        bom = len(_BOM) if head.startswith(_BOM) else 0
        if head[bom : bom + 7] == b'{\n    "':
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                tail = mapped[max(0, size - 64) :].rstrip()
                if tail.endswith(b"\n}"):
                    members = [
                        (_decode_key(m.group(1), display), _decode_value(m.group(2), display))
                        for m in _TOP_MEMBER.finditer(mapped)
                    ]
                    return _scores(members)
    data = load_small(path, display)
    if data is not None:
        if not isinstance(data, dict):
            raise ResultParseError("expected a JSON object", path=display, line=1)
        return _scores(list(data.items()))
    members = []
    with JsonStream(path, display) as stream:
        if stream.start() != "{":
            raise ResultParseError("expected a JSON object", path=display, line=1)
        for key, _ in stream.items():
            if key in NOT_METRICS:
                stream.skip()
            else:
                members.append((key, stream.value()))
        stream.finish()
    return _scores(members)


_BOM = b"\xef\xbb\xbf"


def _decode_key(raw: bytes, display: str) -> str:
    try:
        return str(json.loads(b'"' + raw + b'"'))
    except ValueError:
        raise ResultParseError("a key is not valid JSON", path=display) from None


def _decode_value(raw: bytes, display: str) -> Any:
    try:
        return json.loads(raw)  # the stdlib reads NaN and Infinity as Python's json.dump writes them
    except ValueError:
        return None  # not a scalar we understand (cut file, odd literal): not a score


def _scores(members: list[tuple[str, Any]]) -> ResultScores:
    out = ResultScores()
    for key, value in members:
        if key == ERROR_KEY and value is not None:
            out.error = str(value)[:MAX_REASON]
            continue
        if key in NOT_METRICS or not isinstance(value, int | float):
            continue  # (a bool is a number here, as in the default summarizer: True -> 1.0)
        score = float(value)
        if math.isnan(score):
            out.metrics.append((key, None, f"{key} is NaN"))
        elif not math.isfinite(score):
            out.metrics.append((key, None, f"{key} is infinite"))
        else:
            out.metrics.append((key, score, None))
    return out
