"""Scoring of parsed answers against gold answers.

`MathRubric` grades the last boxed answer. Most GSM8K-style answers are plain numbers,
so a Decimal comparison handles them in microseconds; only answers that are not plain
numbers (fractions, LaTeX expressions, percentages, ...) go to math-verify, which costs
milliseconds and pulls in sympy, so it is imported lazily on first use.

Scoring never raises on model output: whatever the completion contains, the result is a
reward of 0.0 or 1.0 plus the metrics.
"""

from __future__ import annotations

import logging
import re
import threading
from decimal import Decimal, InvalidOperation
from typing import Any

from .parsers import extract_boxed, flexible_answer, lm_eval_normalize, strict_answer

logger = logging.getLogger(__name__)

# LaTeX text-ish wrappers whose content is kept (numbers) or treated as a unit (words).
_TEXT_CMD_RE: re.Pattern[str] = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
# LaTeX spacing macros used as digit-group separators ("1\,000") are dropped outright.
_GROUP_SPACE_RE: re.Pattern[str] = re.compile(r"\\[,!]")
# Other LaTeX spaces become ordinary spaces.
_SPACE_RE: re.Pattern[str] = re.compile(r"\\[;: ]|~|\\quad|\\qquad")
# A number (optional sign, optional thousands separators, optional decimals), then
# optionally a unit made of whole words separated from the number by whitespace. A
# single letter ("5 x") is not accepted as a unit: it is more likely a variable.
_NUMBER_RE: re.Pattern[str] = re.compile(
    r"([-+]?)\s*((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:\s+[A-Za-z]{2,}(?:\s+[A-Za-z]+)*)?"
)


def as_number(text: str) -> Decimal | None:
    """Read `text` as one plain number (dollar signs, thousands commas, units allowed).

    Returns None for anything that is not unambiguously a single number, which sends the
    comparison to math-verify instead. Commas count only as thousands separators, so
    "5,6" (a list of solutions) is not read as 56.
    """
    s = _TEXT_CMD_RE.sub(lambda m: f" {m.group(1)} ", text)
    s = _GROUP_SPACE_RE.sub("", s)
    s = _SPACE_RE.sub(" ", s)
    s = s.replace("\\$", "").replace("$", "").strip().rstrip(".").strip()
    match = _NUMBER_RE.fullmatch(s)
    if match is None:
        return None
    try:
        value = Decimal(match.group(2).replace(",", ""))
    except InvalidOperation:
        return None
    return -value if match.group(1) == "-" else value


def math_verify_equal(prediction: str, gold: str, timeout: float = 5.0) -> bool:
    """Whether math-verify judges the boxed `prediction` equal to the `gold` answer.

    The gold is wrapped as `$gold$` and the prediction as `\\boxed{prediction}` so
    math-verify's LaTeX extractor reads each as exactly one expression. Any failure,
    including math-verify's timeout (a BaseException subclass), counts as not equal.

    math-verify enforces `timeout` with SIGALRM, which works only on the main thread;
    from any other thread (Ray actors, executors) it would have to run unbounded, so
    there the check runs in a child process that is killed when it overruns.
    """
    if threading.current_thread() is not threading.main_thread():
        from .verify_worker import shared_worker

        return shared_worker().equal(prediction, gold, timeout)

    from math_verify import parse, verify  # lazy: pulls in sympy (~0.5 s)
    from math_verify.errors import TimeoutException

    seconds = max(1, int(timeout))  # signal.alarm takes whole seconds
    try:
        gold_parsed: list[Any] = parse(f"${gold}$", parsing_timeout=seconds)
        pred_parsed: list[Any] = parse(f"\\boxed{{{prediction}}}", parsing_timeout=seconds)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=seconds))
    except (Exception, TimeoutException):
        logger.debug("math-verify failed on %r vs %r", prediction, gold, exc_info=True)
        return False


class MathRubric:
    """Reward 1.0 when the last boxed answer equals the gold answer, else 0.0.

    Metrics reported alongside (each 0.0/1.0):
      * `boxed`    - a complete boxed answer was present (format adherence);
      * `strict`   - lm-eval gsm8k strict-match (`#### N`) was correct;
      * `flexible` - lm-eval gsm8k flexible-extract (last number) was correct.
    The lm-eval metrics compare normalised strings exactly as lm-eval does (so "18.0"
    does not match "18" there, while the reward accepts it).
    """

    def __init__(self, max_answer_chars: int = 1000, math_verify_timeout: float = 5.0) -> None:
        # Boxed answers longer than this skip math-verify: sympy on huge inputs is slow,
        # and no real answer needs that many characters.
        self.max_answer_chars: int = max_answer_chars
        # Seconds per math-verify step before the answer is scored 0.
        self.math_verify_timeout: float = math_verify_timeout

    def answers_match(self, prediction: str, gold: str) -> bool:
        """Compare one extracted answer with the gold: Decimal fast path, else math-verify."""
        pred_num = as_number(prediction)
        gold_num = as_number(gold)
        if pred_num is not None and gold_num is not None:
            return pred_num == gold_num
        if not prediction.strip() or len(prediction) > self.max_answer_chars:
            return False
        return math_verify_equal(prediction, gold, self.math_verify_timeout)

    def score(self, completion: str, answer: str) -> tuple[float, dict[str, float]]:
        """Grade `completion` against the gold `answer`; returns (reward, metrics)."""
        text = completion if isinstance(completion, str) else ""
        gold = answer if isinstance(answer, str) else str(answer)
        gold_lm = lm_eval_normalize(gold)

        boxed = extract_boxed(text)
        correct = boxed is not None and self.answers_match(boxed, gold)
        strict = strict_answer(text)
        flexible = flexible_answer(text)
        metrics: dict[str, float] = {
            "strict": 1.0 if strict is not None and strict == gold_lm else 0.0,
            "flexible": 1.0 if flexible is not None and flexible == gold_lm else 0.0,
            "boxed": 1.0 if boxed is not None else 0.0,
        }
        return (1.0 if correct else 0.0), metrics
