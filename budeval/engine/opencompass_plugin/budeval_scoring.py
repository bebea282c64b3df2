"""budeval's answer scoring, run by OpenCompass 0.5.4 (imports only the standard library and OpenCompass).

budeval never imports this module: budeval/engine/render.py embeds its source in every config with a bundled or
custom dataset, which writes it next to the OpenCompass process and names :class:`BudevalEvaluator` as the
dataset's evaluator with ``scoring=<name>`` (and ``pattern`` for ``regex``). Meanings (docs/opencompass.md
"Scoring" has examples):

- ``exact``: the answer, without surrounding whitespace, equals the gold character for character;
- ``normalized``: equal after :func:`normalize` (case, punctuation, articles ``a/an/the`` and spacing ignored);
- ``contains``: the normalized gold appears in the normalized answer as whole words (``8`` in "A spider has 8
  legs.", not in "18");
- ``regex``: OpenCompass's ``match_answer_pattern`` extracts group 1 of ``pattern`` from the answer (``re.search``),
  which must then equal the gold after :func:`normalize`;
- ``option`` (multiple choice): the letter read from the answer by :func:`chosen_option` equals the gold letter.

An empty answer is never right (unless the gold is empty too, for ``exact``/``normalized``). The result is
``{'accuracy': percent, 'details': [{'pred', 'answer', 'gold', 'correct'}, ...]}`` (one entry per example, in
order), which OpenCompass writes to ``results/<model>/<dataset>.json``.
"""

from __future__ import annotations

import re
from typing import Any

from opencompass.openicl.icl_evaluator import BaseEvaluator
from opencompass.registry import ICL_EVALUATORS
from opencompass.utils.text_postprocessors import match_answer_pattern

SCORINGS = ("exact", "normalized", "contains", "regex", "option")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
#: A point or comma that is not between two digits ("Paris." but not "3.5" or "1,000") is dropped; any other
#: punctuation separates words ("2+2" -> "2 2", "New-York" -> "new york").
_SEPARATOR = re.compile(r"(?<!\d)[.,]|[.,](?!\d)")
_PUNCTUATION = re.compile(r"[^\w\s.,]")
#: An explicit answer statement: "The answer is D", "Answer: (B)", "the correct option is C", "Choice: A.".
_STATEMENT = re.compile(
    r"(?i:\b(?:answer|option|choice)\s*(?:is|would\s+be|:)?\s*(?:option\s*)?)\(?([A-Z])\)?(?![A-Za-z0-9])"
)
#: A bare option letter at the start, closed by punctuation or the end: "B", "B.", "(B)", "B) Dog", "B: Dog".
_LEADING_LETTER = re.compile(r"^\(?([A-Z])(?:[.:)]|$)")


def normalize(text: str) -> str:
    """Lower case; punctuation dropped or turned into spaces ("Paris." -> ``paris``, "2+2" -> ``2 2``) but a point
    or comma between digits kept (``3.5`` never equals ``35`` nor contains ``5``); articles dropped; spaces
    collapsed."""
    text = _PUNCTUATION.sub(" ", _SEPARATOR.sub("", text.lower()))
    return " ".join(_ARTICLES.sub(" ", text).split())


def contains_words(answer: str, gold: str) -> bool:
    """Whether the normalized ``gold`` is a run of whole words of the normalized ``answer`` (empty gold: never)."""
    want = normalize(gold).split()
    have = normalize(answer).split()
    if not want:
        return False
    return any(have[i : i + len(want)] == want for i in range(len(have) - len(want) + 1))


def chosen_option(answer: str, options: dict[str, str]) -> str:
    """The option letter an answer chooses, ``''`` if none can be read. ``options`` maps letter -> option text.

    In order: the LAST explicit answer statement ("The answer is D", "Answer: (B)"); else a bare letter at the start
    ("B", "B.", "(B)", "B) Dog"); else the one option whose text appears as whole words ("The capital is Tokyo." ->
    the Tokyo option; two or more named -> none). OpenCompass's ``first_option_postprocess`` is not used: on English
    free text it reads the article in "A dog barks" as option A and "I have 1 Apple" as A.
    """
    text = answer.strip()
    if not text:
        return ""
    stated = [m for m in _STATEMENT.findall(text) if m in options]
    if stated:
        return str(stated[-1])
    leading = _LEADING_LETTER.match(text)
    if leading and leading.group(1) in options:
        return leading.group(1)
    named = [letter for letter, option in options.items() if option and contains_words(text, option)]
    return named[0] if len(named) == 1 else ""


@ICL_EVALUATORS.register_module()
class BudevalEvaluator(BaseEvaluator):  # type: ignore[misc]
    """Scores generated answers by the named scoring; per-example verdicts in ``details`` (see module docstring)."""

    def __init__(self, scoring: str, pattern: str | None = None) -> None:
        super().__init__()
        if scoring not in SCORINGS:
            raise ValueError(f"unknown scoring {scoring!r} (known: {', '.join(SCORINGS)})")
        if scoring == "regex":
            if not pattern:
                raise ValueError("scoring 'regex' needs a pattern")
            re.compile(pattern)
        self.scoring = scoring
        self.pattern = pattern

    def judge(self, prediction: Any, gold: Any, example: dict[str, Any]) -> tuple[str, bool]:
        """(the answer as compared, right or wrong) for one example; ``example`` is its dataset row."""
        pred = "" if prediction is None else str(prediction)
        ref = "" if gold is None else str(gold)
        if self.scoring == "exact":
            return pred.strip(), pred.strip() == ref.strip()
        if self.scoring == "normalized":
            return normalize(pred), normalize(pred) == normalize(ref)
        if self.scoring == "contains":
            return pred, contains_words(pred, ref)
        if self.scoring == "regex":
            extracted = str(match_answer_pattern(pred, self.pattern))
            return extracted, bool(extracted.strip()) and normalize(extracted) == normalize(ref)
        letters = [k for k in sorted(example) if len(k) == 1 and "A" <= k <= "Z"]
        options = {k: "" if example[k] is None else str(example[k]) for k in letters}
        chosen = chosen_option(pred, options)
        return chosen, bool(chosen) and chosen == ref.strip()

    def score(self, predictions: list[Any], references: list[Any], test_set: Any) -> dict[str, Any]:
        """``{'accuracy': percent right, 'details': [...]}``; lengths must match (else ``{'error': ...}``)."""
        if len(predictions) != len(references):
            return {"error": f"{len(predictions)} predictions for {len(references)} references"}
        details = []
        right = 0
        for index, (prediction, gold) in enumerate(zip(predictions, references, strict=True)):
            example = dict(test_set[index]) if test_set is not None else {}
            answer, correct = self.judge(prediction, gold, example)
            right += correct
            details.append({"pred": prediction, "answer": answer, "gold": gold, "correct": correct})
        accuracy = 100.0 * right / len(predictions) if predictions else 0.0
        return {"accuracy": accuracy, "details": details}
