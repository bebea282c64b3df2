"""How a dataset's answers are scored: the kinds of bundled and custom datasets (``qa``, ``mcq``), the scorings each
kind allows, and the ``regex:<pattern>`` spelling. The scoring code itself runs inside OpenCompass
(budeval/engine/opencompass_plugin/budeval_scoring.py); this module only checks what a request names.
"""

from __future__ import annotations

import re
from typing import Literal

DatasetKind = Literal["qa", "mcq"]

#: How each kind of dataset may be scored (docs/opencompass.md "Scoring"); the first is the kind's default.
#: ``regex`` is written ``regex:<pattern>``.
SCORINGS: dict[str, tuple[str, ...]] = {
    "qa": ("contains", "exact", "normalized", "regex", "judge"),
    "mcq": ("option", "exact", "normalized", "regex"),
}
#: Scored by the request's ``judge`` model (OpenCompass's GenericLLMEvaluator), not by a rule.
JUDGE_SCORING = "judge"
REGEX_PREFIX = "regex:"


def split_scoring(scoring: str) -> tuple[str, str | None]:
    """``("regex", pattern)`` for ``regex:<pattern>``, else ``(scoring, None)``."""
    if scoring.startswith(REGEX_PREFIX):
        return "regex", scoring[len(REGEX_PREFIX) :]
    return scoring, None


def check_scoring(scoring: str, kind: str) -> str:
    """``scoring`` if ``kind`` may be scored that way; else ``ValueError`` saying why and what is allowed."""
    allowed = SCORINGS[kind]
    spelled = ", ".join(f"{REGEX_PREFIX}<pattern>" if s == "regex" else s for s in allowed)
    name, pattern = split_scoring(scoring)
    if name == "regex":
        if not pattern:
            raise ValueError("scoring 'regex:' needs a pattern after the colon, e.g. regex:answer is (\\w+)")
        try:
            groups = re.compile(pattern).groups
        except re.error as exc:
            raise ValueError(f"scoring {scoring!r}: invalid regular expression: {exc}") from None
        if groups < 1:
            raise ValueError(
                f"scoring {scoring!r}: the pattern needs a capturing group around the answer,"
                " e.g. regex:answer is (\\w+)"
            )
    if name not in allowed:
        raise ValueError(f"scoring {scoring!r} does not apply to {kind} datasets: use one of {spelled}")
    return scoring
