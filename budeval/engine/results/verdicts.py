"""Per-example verdicts (right/wrong, and a numeric score where the evaluator gives one) from the ``details`` of
``results/{model}/{dataset}.json``, placed by prediction key.

Source: OpenCompass 0.5.4 ``openicl/icl_evaluator/icl_base_evaluator.py`` (``BaseEvaluator.evaluate``): with ``n``
replicas the dataset is the test set repeated ``n`` times (``opencompass/datasets/base.py``), so prediction key
``r * N + i`` is replica ``r`` of example ``i`` (``N`` examples per replica); the evaluator groups the replicas of an
example and flattens every field of its per-replica details into a list (``{"example_abbr": "<ds>_<i>",
"correct": [bool per replica], ...}``). Two shapes occur:

- a list (``[{"example_abbr": "<ds>_<i>", <verdict key>: [bool, ...], "score": [float, ...]?, ...}]``), item ``i``
  being example ``i`` in prediction order: the evaluator groups the replicas by ``example_abbr`` in the order it
  meets them, which is the predictions' order. The number in ``example_abbr`` is the example's index in the FULL
  split (``datasets/base.py``), which differs from the prediction key under a ``test_range`` (a slice or a random
  sample, ``icl_dataset_reader.py``), so it is never used to place a verdict;
- a dict keyed by prediction index (``{"type": "GEN", "0": {...}}``, written by ``OpenICLEvalTask.format_details``
  when the evaluator gave no details; its GEN items usually carry no verdict).

Verdict keys, final verdict first (:data:`VERDICT_KEYS`): ``cascade_correct`` (``evaluator/cascade_evaluator.py``:
the rule verdict OR the LLM judge's, the final one; the intermediate ``rule_evaluation.correct`` and
``llm_evaluation.llm_correct`` are nested and never read as the verdict), ``correct`` (most evaluators),
``is_correct`` (code and HF-metric evaluators); a 0/1 integer counts as a verdict (as ``int(detail['correct'])`` in
OpenCompass's own pass@k counting). A numeric per-example ``score`` is kept beside the verdict, and so is a judge's
raw answer (``judge_answer``, written by budeval's ``budeval_judge_postprocess``: budeval/engine/judging.py).
"""

from __future__ import annotations

import math
import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from budeval.engine.results.jsonstream import JsonStream
from budeval.engine.results.loading import WHOLE_FILE_LIMIT, load_small
from budeval.errors import ResultParseError

UNKNOWN, WRONG, RIGHT = 0, 1, 2
MARK: tuple[bool | None, ...] = (None, False, True)
#: The per-example verdict keys, the final verdict first.
VERDICT_KEYS = ("cascade_correct", "correct", "is_correct")
SCORE_KEY = "score"
#: The judge's raw answer per example (budeval's judge post-processor).
JUDGE_ANSWER_KEY = "judge_answer"
DETAILS_SHAPE = re.compile(rb'"details"\s*:\s*([\[{])')
CORRECT_KEY = re.compile(rb'"correct"\s*:\s*(\[[^\]]*\]|true|false|null|0|1)(?=\s*[,}\]])')
ABBR_KEY = re.compile(rb'"example_abbr"\s*:')
#: Keys whose presence rules out the byte scan of ``"correct"`` (another verdict key, nested verdicts, scores).
_NOT_SCANNABLE = re.compile(rb'"(?:cascade_correct|is_correct|rule_evaluation|llm_evaluation|score|judge_answer)"\s*:')
#: Results files up to this size are scanned as raw bytes (no decoding, so no decoder's transient memory).
SCAN_LIMIT = 64 << 20


@dataclass(slots=True)
class Verdicts:
    """Verdicts by prediction key (the key of ``predictions/{model}/{dataset}.json``, shards offset).

    ``marks[k]``: UNKNOWN, WRONG or RIGHT; ``scores[k]``: a finite per-example score where the evaluator gives one;
    ``examples``: examples per replica (``N``) when the details show replicas (``n > 1``), else 0 (then the key is
    the example index and every row is replica 0).
    """

    marks: bytearray = field(default_factory=bytearray)
    scores: dict[int, float] | None = None
    examples: int = 0
    #: The details showed the replicas per example (list-shaped details): the run config's ``n`` is not needed and,
    #: after a ``-r`` pass that changed ``n`` without re-running the dataset, would be wrong.
    replicas_shown: bool = False
    #: A judge's raw answer by prediction key (datasets scored by a judge), else None.
    judge_answers: dict[int, str] | None = None

    def put_judge_answer(self, key: int, value: Any) -> None:
        if isinstance(value, str):
            if self.judge_answers is None:
                self.judge_answers = {}
            self.judge_answers[key] = value

    def place(self, key: int, value: int) -> None:
        if key >= len(self.marks):
            self.marks.extend(bytes(key + 1 - len(self.marks)))
        self.marks[key] = value

    def example_of(self, key: int) -> tuple[int, int]:
        """(example index, replica) of a prediction key."""
        return divmod(key, self.examples)[::-1] if self.examples else (key, 0)


def read_verdicts(path: Path, display: str) -> Verdicts:
    """The verdicts of one results file (empty when the file is absent or records none).

    Raises ResultParseError when the file is not JSON (an error of the results file, not of the predictions).
    """
    out = Verdicts()
    if not path.is_file():
        return out
    size = path.stat().st_size
    if size <= SCAN_LIMIT:
        raw = path.read_bytes()
        if not any(f'"{key}"'.encode() in raw for key in VERDICT_KEYS) and b'"score"' not in raw:
            return out  # this evaluator records no per-example verdict: nothing to decode
        shape = DETAILS_SHAPE.search(raw)
        scannable = shape is not None and shape.group(1) == b"[" and not _NOT_SCANNABLE.search(raw)
        if scannable and _scan_list_verdicts(raw, out):
            return out
        del raw
    data = load_small(path, display) if size <= WHOLE_FILE_LIMIT else None
    if data is not None:
        details = data.get("details") if isinstance(data, dict) else None
        if isinstance(details, dict):
            bound = len(details)  # keys are prediction indices 0..len-2 (plus "type"): larger ones are damage
            for item_key, item in details.items():
                if item_key.isdigit() and int(item_key) <= bound and isinstance(item, dict):
                    _put_keyed(out, int(item_key), item)
        elif isinstance(details, list):
            _put_list(out, details)
        return out
    with JsonStream(path, display) as stream:
        if stream.start() != "{":
            raise ResultParseError("expected a JSON object", path=display, line=1)
        for key, _ in stream.items():
            if key != "details":
                stream.skip()
                continue
            if stream.start() == "{":  # {"type": ..., "0": {...}, ...}
                for item_key, _ in stream.items():
                    item = stream.value()
                    if item_key.isdigit() and isinstance(item, dict):
                        _put_keyed(out, int(item_key), item)
            else:  # [{"example_abbr": "<dataset>_<i>", ...}, ...]
                _put_list(out, [stream.value() for _ in stream.elements()])
        stream.finish()
    return out


def dataset_verdicts(results: Path, display: str, predictions: list[Path], n: int = 1) -> Verdicts:
    """A dataset's verdicts (:func:`read_verdicts`); when its config says ``n > 1`` replicas and the details did not
    show them (an evaluator without per-example details), ``examples`` = prediction entries / ``n``."""
    verdicts = read_verdicts(results, display)
    if n > 1 and not verdicts.replicas_shown:
        entries = sum(_count_entries(p) for p in predictions)
        if entries and entries % n == 0:
            verdicts.examples = entries // n
    return verdicts


_ENTRY = re.compile(rb'^    "\d+": ', re.M)


def _count_entries(path: Path) -> int:
    """Top-level members of a predictions file written with ``indent=4`` (OpenCompass's layout), 0 if unknown.
    Counted over a memory map: the file is never held in memory."""
    try:
        with path.open("rb") as f:
            if f.seek(0, 2) == 0:
                return 0
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return sum(1 for _ in _ENTRY.finditer(mapped))
    except (OSError, ValueError):
        return 0


def item_verdicts(item: dict[str, Any]) -> tuple[list[bool | None], list[float | None]]:
    """One details item's verdict and score per replica (lists of equal length; empty when it has neither).

    The first of :data:`VERDICT_KEYS` present wins; a bool is one replica, a list one value per replica; anything
    else (None, a string) is no verdict. ``score``: a finite number per replica, else None.
    """
    verdicts: list[bool | None] = []
    for key in VERDICT_KEYS:
        if key in item and item[key] is not None:
            value = item[key]
            values = value if isinstance(value, list) else [value]
            verdicts = [_as_verdict(v) for v in values]
            break
    else:
        if "rule_evaluation" in item:
            verdicts = _cascade_without_final(item)
    raw_scores = item.get(SCORE_KEY)
    score_values = raw_scores if isinstance(raw_scores, list) else [] if raw_scores is None else [raw_scores]
    scores = [_finite(v) for v in score_values]
    width = max(len(verdicts), len(scores))
    verdicts += [None] * (width - len(verdicts))
    scores += [None] * (width - len(scores))
    return verdicts, scores


def _as_verdict(value: Any) -> bool | None:
    """A bool, or 0/1 as some evaluators write it (ARC prize, MolecularIQ); anything else is no verdict."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def _cascade_without_final(item: dict[str, Any]) -> list[bool | None]:
    """CascadeEvaluator writes no ``cascade_correct`` when no sample went to the LLM judge: the verdict per replica
    is then the rule's (``rule_evaluation[r].correct``), or the judge's where one was asked (``llm_evaluation``
    entries, placed by their ``dataset_replica_idx``)."""
    rules = item["rule_evaluation"] if isinstance(item["rule_evaluation"], list) else [item["rule_evaluation"]]
    out: list[bool | None] = [
        _as_verdict(rule.get("correct")) if isinstance(rule, dict) else None
        for rule in rules
    ]
    judged = item.get("llm_evaluation")
    for entry in judged if isinstance(judged, list) else [judged] if isinstance(judged, dict) else []:
        replica = entry.get("dataset_replica_idx", 0) if isinstance(entry, dict) else None
        if isinstance(replica, int) and 0 <= replica < len(out) and entry.get("llm_correct") is True:
            out[replica] = True
    return out


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _code(value: bool | None) -> int:
    return UNKNOWN if value is None else RIGHT if value else WRONG


def _put_keyed(out: Verdicts, key: int, item: dict[str, Any]) -> None:
    """A dict-shaped details item is one prediction: its (first) verdict goes to its own key."""
    verdicts, scores = item_verdicts(item)
    answers = item.get(JUDGE_ANSWER_KEY)
    out.put_judge_answer(key, answers[0] if isinstance(answers, list) and answers else answers)
    if verdicts:
        out.place(key, _code(verdicts[0]))
    if scores and scores[0] is not None:
        out.scores = out.scores or {}
        out.scores[key] = scores[0]


def _put_list(out: Verdicts, details: list[Any]) -> None:
    """List-shaped details: item ``i`` (its position) is example ``i``, holding one value per replica."""
    items = [item_verdicts(item) if isinstance(item, dict) else ([], []) for item in details]
    examples = len(items)
    replicas = max((len(v) for v, _ in items), default=0)
    out.replicas_shown = replicas > 0
    if replicas > 1:
        out.examples = examples
    for i, item in enumerate(details):
        answers = item.get(JUDGE_ANSWER_KEY) if isinstance(item, dict) else None
        for r, answer in enumerate(answers if isinstance(answers, list) else [answers]):
            out.put_judge_answer(r * examples + i, answer)
    for i, (verdicts, scores) in enumerate(items):
        for r, (verdict, score) in enumerate(zip(verdicts, scores, strict=True)):
            key = r * examples + i
            out.place(key, _code(verdict))
            if score is not None:
                out.scores = out.scores or {}
                out.scores[key] = score


def _scan_list_verdicts(raw: bytes, out: Verdicts) -> bool:
    """List-shaped details with only ``"correct"`` verdicts, read without decoding them: the ``"correct": [...]``
    values in order, item ``i`` being example ``i``. False when there is not exactly one per ``example_abbr`` (the
    caller then decodes the file).

    Safe on arbitrary text: inside a JSON string every quote is escaped, so the bare-quoted keys matched here can only
    be real keys. Decoding the whole file instead costs about half of the parse time of a run.
    """
    flags = CORRECT_KEY.findall(raw)
    if len(flags) != len(ABBR_KEY.findall(raw)):
        return False
    per_item = [_VERDICT_CODES.get(f) or _verdict_codes(f) for f in flags]
    replicas = max(map(len, per_item), default=0)
    examples = len(per_item)
    out.replicas_shown = replicas > 0
    if replicas <= 1:
        out.marks[:] = bytes(codes[0] if codes else UNKNOWN for codes in per_item)
        return True
    out.examples = examples
    for i, codes in enumerate(per_item):
        for r, code in enumerate(codes):
            out.place(r * examples + i, code)
    return True


_VERDICT_CODES: dict[bytes, tuple[int, ...]] = {}


def _verdict_codes(flags: bytes) -> tuple[int, ...]:
    """``true``/``false``/``null`` or a list of them -> one code per replica."""
    compact = flags.replace(b" ", b"").replace(b"\n", b"").strip(b"[]")
    parts = compact.split(b",") if compact else []
    codes = tuple(RIGHT if p in (b"true", b"1") else WRONG if p in (b"false", b"0") else UNKNOWN for p in parts)
    if len(_VERDICT_CODES) < 64:
        _VERDICT_CODES[flags] = codes
    return codes
