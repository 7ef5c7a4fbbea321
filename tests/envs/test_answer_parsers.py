"""Answer extraction: last boxed answer after thinking, and lm-eval's gsm8k filters."""

from __future__ import annotations

import pytest

from rayeval.envs import extract_boxed, flexible_answer, strict_answer


def test_last_boxed_after_think_wins() -> None:
    text = "<think>maybe \\boxed{3}</think> first \\boxed{4} then finally \\boxed{5}."
    assert extract_boxed(text) == "5"
    assert extract_boxed("<think>only here \\boxed{3}</think> no box after") is None


def test_nested_braces_are_kept() -> None:
    assert extract_boxed("so \\boxed{\\frac{1}{2}} done") == "\\frac{1}{2}"
    assert extract_boxed("\\boxed{\\{1, 2\\}}") == "\\{1, 2\\}"


def test_no_box_or_unclosed_box() -> None:
    assert extract_boxed("the answer is 7") is None
    assert extract_boxed("\\boxed{12") is None
    assert extract_boxed("\\boxed{3} then truncated \\boxed{12") == "3"


def test_braceless_and_fbox_forms() -> None:
    assert extract_boxed("answer: $\\boxed 42$") == "42"
    assert extract_boxed("\\fbox{9}") == "9"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so #### 1,000.", "1000"),
        ("#### 5 and later #### 6", "5"),
        ("#### -3", "-3"),
        ("#### $7", None),  # lm-eval's regex does not allow "$" after "#### "
        ("The answer is 42", None),
    ],
)
def test_strict_answer_matches_lm_eval(text: str, expected: str | None) -> None:
    assert strict_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She pays $1,250.", "1250"),
        ("3 apples and 4 pears, so 7", "7"),
        ("it is -12 degrees", "-12"),
        ("no digits", None),
        ("x 5", "5"),
        ("costs $18.50 total", "18.50"),
    ],
)
def test_flexible_answer_matches_lm_eval(text: str, expected: str | None) -> None:
    assert flexible_answer(text) == expected
