"""Edge cases of budeval's answer scoring (issue 20; docs/opencompass.md "Scoring"), found by breaker 12.

Every case is judged by budeval's real evaluator (``BudevalEvaluator.judge``) in the real OpenCompass venv: one child
process for all cases, module scope. The end-to-end path through OpenCompass's eval step is covered by
tests/engine/test_scoring_opencompass.py; this file pins the verdicts of answers that are easy to get wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "budeval" / "engine" / "opencompass_plugin" / "budeval_scoring.py"
OPENCOMPASS_VENV = Path(os.environ.get("BUDEVAL_CACHE") or Path.home() / ".cache" / "budeval") / "opencompass-venv"
OC_PYTHON = OPENCOMPASS_VENV / "bin" / "python"
OPTIONS = {"A": "Cat", "B": "Cow", "C": "Dog", "D": "Fish"}

pytestmark = [
    pytest.mark.opencompass,
    pytest.mark.usefixtures("opencompass_env"),  # installs the venv on a cold machine (tests/conftest.py)
]


# == scoring (issue 20) ================================================================================================
#: name -> (scoring, pattern, prediction, gold, dataset row); each judged once by BudevalEvaluator.judge.
CASES: dict[str, tuple[str, str | None, Any, Any, dict[str, Any]]] = {
    "neg_gold_pos_answer_contains": ("contains", None, "The answer is 5.", "-5", {}),
    "pos_gold_neg_answer_contains": ("contains", None, "The temperature fell to -5.", "5", {}),
    "neg_gold_pos_answer_normalized": ("normalized", None, "5", "-5", {}),
    "neg_gold_pos_answer_regex": ("regex", r"answer is (\S+?)\.?$", "The answer is 5.", "-5", {}),
    "option_answer_is_colon": ("option", None, "The answer is: B", "B", OPTIONS),
    "option_correct_answer_is_colon": ("option", None, "The correct answer is: B", "B", OPTIONS),
    "option_explanation_mentions_other_option": (
        "option",
        None,
        "The answer is B. Option A is incorrect because a cat does not give milk.",
        "B",
        OPTIONS,
    ),
    "option_bold_letter": ("option", None, "**B**", "B", OPTIONS),
    "option_answer_is_bold_letter": ("option", None, "The answer is **B**.", "B", OPTIONS),
    "option_bold_answer_label": ("option", None, "**Answer:** B", "B", OPTIONS),
    "option_lowercase_letter": ("option", None, "b", "B", OPTIONS),
    "option_lowercase_statement": ("option", None, "the answer is b", "B", OPTIONS),
    "option_text_contains_other_option": (
        "option",
        None,
        "Cat food",
        "B",
        {"A": "Cat", "B": "Cat food", "C": "Dog", "D": "Fish"},
    ),
    "option_lowercase_gold": ("option", None, "B", "b", OPTIONS),
    "decimal_zero_contains": ("contains", None, "The answer is 5.0", "5", {}),
    "thousands_comma_contains": ("contains", None, "The answer is 1,000.", "1000", {}),
    "trailing_zero_normalized": ("normalized", None, "3.50", "3.5", {}),
    "unit_glued_contains": ("contains", None, "The distance is 5km.", "5", {}),
    "cjk_contains": ("contains", None, "答案是東京。", "東京", {}),
    "nfd_normalized": ("normalized", None, "Cafe\u0301", "Café", {}),
    "nfd_contains": ("contains", None, "I ordered a cafe\u0301 au lait.", "café", {}),
    "cpp_is_not_c_contains": ("contains", None, "The language is C.", "C++", {}),
    "csharp_is_not_c_normalized": ("normalized", None, "C", "C#", {}),
    "punctuation_only_gold_normalized": ("normalized", None, "!!", "?", {}),
    "article_answer_vs_article_gold_normalized": ("normalized", None, "the", "a", {}),
    "empty_answer_vs_dot_gold_normalized": ("normalized", None, "", ".", {}),
    "regex_unmatched_group_is_not_none": ("regex", r"returns (\w+)|answer: (\w+)", "answer: 7", "None", {}),
    "article_letter_gold_contains_wrong_vitamin": ("contains", None, "Vitamin C is found in oranges.", "Vitamin A", {}),
    "article_letter_gold_contains_exact_answer": ("contains", None, "A", "A", {}),
    "article_letter_gold_contains_blood_type": ("contains", None, "Blood type A.", "A", {}),
    "option_preferred_over_other": ("option", None, "I would pick option B over option A.", "B", OPTIONS),
    "option_chinese_statement": ("option", None, "答案是B", "B", OPTIONS),
    "option_chinese_colon": ("option", None, "答案\uff1aB", "B", OPTIONS),
    # budeval's documented decisions around the cases above (docs/opencompass.md "Scoring"), see DECISIONS
    "decision_option_lowercase_article": ("option", None, "the answer is a dog", "C", OPTIONS),
    "decision_option_two_mentions": ("option", None, "Option C. Option A is wrong.", "C", OPTIONS),
    "decision_option_short_text_also_alone": (
        "option",
        None,
        "I like cat, not cat food",
        "B",
        {"A": "Cat", "B": "Cat food", "C": "Dog", "D": "Fish"},
    ),
    "decision_option_lowercase_in_brackets": ("option", None, "Option (b) is my pick", "B", OPTIONS),
    "decision_option_fullwidth_letter": ("option", None, "答案是\uff22", "B", OPTIONS),
    "decision_ordinal_glued_contains": ("contains", None, "He finished 3rd.", "3", {}),
    "decision_range_dash_contains": ("contains", None, "It takes 2-3 days.", "3", {}),
    "decision_sign_after_equals_contains": ("contains", None, "x=-5", "-5", {}),
    "decision_version_not_shortened_normalized": ("normalized", None, "1.0.0", "1.0", {}),
    "decision_fullwidth_digit_normalized": ("normalized", None, "\uff15", "5", {}),
    "decision_a_plus_is_not_a_contains": ("contains", None, "I got an A+.", "A", {}),
    "decision_lowercase_letter_mid_sentence_contains": ("contains", None, "vitamin a is in carrots", "Vitamin A", {}),
    "decision_capital_letter_mid_sentence_contains": ("contains", None, "Vitamin A is in carrots.", "Vitamin A", {}),
    "decision_cjk_character_inside_word_contains": ("contains", None, "東京", "京", {}),
    "decision_punctuation_gold_contains": ("contains", None, "?", "?", {}),
    "decision_regex_second_group": ("regex", r"returns (\w+)|answer: (\w+)", "answer: 7", "7", {}),
    # controls (right today): if these change the harness is broken, not the scoring
    "control_contains_spider": ("contains", None, "A spider has 8 legs.", "8", {}),
    "control_option_statement": ("option", None, "The answer is B.", "B", OPTIONS),
    "control_exact_stays_exact": ("exact", None, "Paris.", "Paris", {}),
}

_RUNNER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location('budeval_scoring', sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
out = {}
for name, (scoring, pattern, pred, gold, row) in json.loads(sys.stdin.read()).items():
    answer, correct = module.BudevalEvaluator(scoring, pattern).judge(pred, gold, row)
    out[name] = [answer, bool(correct)]
print('VERDICTS' + json.dumps(out))
"""


@pytest.fixture(scope="module")
def verdicts() -> dict[str, tuple[str, bool]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(OC_PYTHON), "-c", _RUNNER, str(PLUGIN)],
        input=json.dumps(CASES),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("VERDICTS"))
    return {k: (v[0], v[1]) for k, v in json.loads(line[len("VERDICTS") :]).items()}


def _check(verdicts: dict[str, tuple[str, bool]], name: str, expected: bool) -> None:
    answer, correct = verdicts[name]
    scoring, _, pred, gold, _ = CASES[name]
    assert correct is expected, f"{scoring}: answer {pred!r} vs gold {gold!r} (read as {answer!r})"


def test_scoring_controls_hold(verdicts: dict[str, tuple[str, bool]]) -> None:
    """The harness itself: the documented examples keep their documented verdicts."""
    _check(verdicts, "control_contains_spider", True)
    _check(verdicts, "control_option_statement", True)
    _check(verdicts, "control_exact_stays_exact", False)


@pytest.mark.parametrize(
    "name",
    [
        "neg_gold_pos_answer_contains",
        "pos_gold_neg_answer_contains",
        "neg_gold_pos_answer_normalized",
        "neg_gold_pos_answer_regex",
    ],
)
def test_sign_of_a_number_is_part_of_the_answer(verdicts: dict[str, tuple[str, bool]], name: str) -> None:
    """5 is not -5. ``normalize`` turns '-' into a space, so "The answer is 5." is scored right against gold -5 (and
    "-5" right against gold 5) by contains, normalized and regex alike: every wrong-sign answer of a math dataset
    counts as right. Expected: wrong."""
    _check(verdicts, name, False)


@pytest.mark.parametrize("name", ["option_answer_is_colon", "option_correct_answer_is_colon"])
def test_option_after_answer_is_colon(verdicts: dict[str, tuple[str, bool]], name: str) -> None:
    """ "The answer is: B" is one of the most common ways a model states a letter. The statement pattern allows
    'is' or ':' but not both, so nothing is read and a right answer is scored wrong. Expected: right."""
    _check(verdicts, name, True)


def test_option_mentioned_in_the_explanation_is_not_the_choice(verdicts: dict[str, tuple[str, bool]]) -> None:
    """ "The answer is B. Option A is incorrect because ..." chooses B. The LAST 'answer/option/choice <letter>' wins,
    and "Option A" in the explanation matches, so it is read as A: right answers that explain themselves score
    wrong. Expected: right (B)."""
    _check(verdicts, "option_explanation_mentions_other_option", True)


@pytest.mark.parametrize("name", ["option_bold_letter", "option_answer_is_bold_letter", "option_bold_answer_label"])
def test_option_in_markdown_bold(verdicts: dict[str, tuple[str, bool]], name: str) -> None:
    """Chat models write markdown: "**B**", "The answer is **B**.", "**Answer:** B". None is read (the asterisks sit
    between the statement and the letter, or before the leading letter). Expected: right."""
    _check(verdicts, name, True)


@pytest.mark.parametrize("name", ["option_lowercase_letter", "option_lowercase_statement"])
def test_option_letter_in_lower_case(verdicts: dict[str, tuple[str, bool]], name: str) -> None:
    """A lone "b" or "the answer is b" answers B (there is no ambiguity with an article when the statement or the
    whole answer is the letter). The letter is matched case-sensitively, so nothing is read. Expected: right."""
    _check(verdicts, name, True)


def test_option_text_that_contains_another_options_text(verdicts: dict[str, tuple[str, bool]]) -> None:
    """Options A "Cat", B "Cat food": the answer "Cat food" is exactly option B, but "Cat" also appears as whole
    words, two options are "named", and none is read. Expected: right (the longest/exact option text wins)."""
    _check(verdicts, "option_text_contains_other_option", True)


@pytest.mark.parametrize("name", ["option_chinese_statement", "option_chinese_colon"])
def test_option_stated_in_chinese(verdicts: dict[str, tuple[str, bool]], name: str) -> None:
    """A Chinese mcq dataset (C-Eval style) gets answers like "答案是B" or "答案\\uff1aB" (full-width colon).
    Only the English words answer/option/choice introduce a letter, and the letter is glued to the CJK text (no
    leading letter, no option text), so nothing is read and every answer is wrong. Expected: right."""
    _check(verdicts, name, True)


def test_option_gold_letter_in_lower_case(verdicts: dict[str, tuple[str, bool]]) -> None:
    """A custom mcq file with "answer": "b" (lower case) makes every answer wrong: the read letter 'B' is compared
    to the gold only after strip(), not upper(). Expected: "B" against gold "b" is right."""
    _check(verdicts, "option_lowercase_gold", True)


@pytest.mark.parametrize(
    "name", ["decimal_zero_contains", "thousands_comma_contains", "trailing_zero_normalized", "unit_glued_contains"]
)
def test_numbers_a_user_calls_equal(verdicts: dict[str, tuple[str, bool]], name: str) -> None:
    """ "5.0" is 5, "1,000" is 1000, "3.50" is 3.5, "5km" answers "how far? 5": a reader calls each right; budeval
    compares digit strings, so each is wrong (numbers with units only count when a space separates them).
    Expected: right."""
    _check(verdicts, name, True)


def test_contains_in_text_without_spaces(verdicts: dict[str, tuple[str, bool]]) -> None:
    """Chinese/Japanese answers have no spaces: "答案是東京。" contains the gold 東京, but whole-word matching needs
    the gold to be a run of space-separated tokens, so a CJK qa dataset can never score. Expected: right."""
    _check(verdicts, "cjk_contains", True)


@pytest.mark.parametrize("name", ["nfd_normalized", "nfd_contains"])
def test_unicode_composed_and_decomposed_are_the_same_text(verdicts: dict[str, tuple[str, bool]], name: str) -> None:
    """ "Cafe\\u0301" (e + combining accent, as many tokenizers emit) and "Café" are the same text to a reader;
    ``normalize`` drops the combining accent as punctuation (-> "cafe") but keeps the composed é (-> "café").
    Expected under normalized/contains: right (NFC/NFKC before comparing)."""
    _check(verdicts, name, True)


@pytest.mark.parametrize("name", ["cpp_is_not_c_contains", "csharp_is_not_c_normalized"])
def test_symbols_that_are_the_answer(verdicts: dict[str, tuple[str, bool]], name: str) -> None:
    """Gold "C++" or "C#" is not "C": punctuation is turned into spaces, so the language C counts as C++ and C#.
    Expected: wrong."""
    _check(verdicts, name, False)


@pytest.mark.parametrize(
    "name",
    [
        "punctuation_only_gold_normalized",
        "article_answer_vs_article_gold_normalized",
        "empty_answer_vs_dot_gold_normalized",
    ],
)
def test_normalized_gold_that_normalizes_to_nothing(verdicts: dict[str, tuple[str, bool]], name: str) -> None:
    """docs/opencompass.md: "An empty answer is never right (except an empty gold under exact/normalized)". A gold
    "?" or "a" or "." is not empty, yet "!!", "the" and "" are scored right because both sides normalize to "".
    Expected: wrong."""
    _check(verdicts, name, False)


def test_gold_that_is_the_letter_a_is_not_an_article(verdicts: dict[str, tuple[str, bool]]) -> None:
    """``normalize`` drops a/an/the everywhere, including when "A" IS the answer: gold "Vitamin A" becomes "vitamin",
    so "Vitamin C is found in oranges." is scored right (a wrong answer counted right). Expected: wrong."""
    _check(verdicts, "article_letter_gold_contains_wrong_vitamin", False)


@pytest.mark.parametrize(
    "name", ["article_letter_gold_contains_exact_answer", "article_letter_gold_contains_blood_type"]
)
def test_gold_a_can_be_answered_right(verdicts: dict[str, tuple[str, bool]], name: str) -> None:
    """Gold "A" (a blood type, a grade, a note) normalizes to nothing, and ``contains_words`` never matches an empty
    gold: under the default qa scoring, the answers "A" and "Blood type A." are wrong -- no answer can be right.
    Expected: right."""
    _check(verdicts, name, True)


def test_option_named_last_as_the_rejected_one(verdicts: dict[str, tuple[str, bool]]) -> None:
    """ "I would pick option B over option A." chooses B; the last 'option <letter>' (A) is taken. Expected: right."""
    _check(verdicts, "option_preferred_over_other", True)


def test_regex_group_that_did_not_take_part_is_not_the_text_none(verdicts: dict[str, tuple[str, bool]]) -> None:
    """``regex:returns (\\w+)|answer: (\\w+)`` on "answer: 7": group 1 did not take part, ``match_answer_pattern``
    returns None and the evaluator turns it into the string "None" -- which equals a gold "None" (a common answer
    of Python questions). Nothing was extracted, so it must be wrong."""
    _check(verdicts, "regex_unmatched_group_is_not_none", False)


#: Expected verdicts of the decision cases: where a reader could argue either way, budeval decided as documented
#: in docs/opencompass.md "Scoring" (limitations included, so that changing one is a visible decision).
DECISIONS = {
    "decision_option_lowercase_article": True,  # "a" before a word is an article; the Dog option is named
    "decision_option_two_mentions": False,  # two letters mentioned without a statement: none read
    "decision_option_short_text_also_alone": False,  # "cat" also named on its own: two options, none read
    "decision_option_lowercase_in_brackets": True,
    "decision_option_fullwidth_letter": True,
    "decision_ordinal_glued_contains": True,  # "3rd" = "3 rd", as "5km" = "5 km"
    "decision_range_dash_contains": True,  # a dash between numbers separates them; it is no sign
    "decision_sign_after_equals_contains": True,
    "decision_version_not_shortened_normalized": False,  # "1.0.0" is not a number with trailing zeros
    "decision_fullwidth_digit_normalized": True,
    "decision_a_plus_is_not_a_contains": False,  # "A+" is a word of its own, like "C++"
    "decision_lowercase_letter_mid_sentence_contains": False,  # limitation: lower-case "a" before a word is an article
    "decision_capital_letter_mid_sentence_contains": True,
    "decision_cjk_character_inside_word_contains": True,  # limitation: a one-character gold matches inside a word
    "decision_punctuation_gold_contains": True,  # a gold that normalizes to nothing is compared exactly
    "decision_regex_second_group": True,
}


@pytest.mark.parametrize(("name", "expected"), list(DECISIONS.items()))
def test_documented_decisions(verdicts: dict[str, tuple[str, bool]], name: str, expected: bool) -> None:
    """The verdicts docs/opencompass.md "Scoring" promises for answers on either side of the edge cases above."""
    _check(verdicts, name, expected)


def test_every_case_is_checked() -> None:
    """No case is judged without an expected verdict (a case added to CASES needs a test or a DECISIONS entry)."""
    source = Path(__file__).read_text(encoding="utf-8")
    unchecked = [name for name in CASES if name not in DECISIONS and source.count(f'"{name}"') < 2]
    assert not unchecked
