"""MathRubric rewards a correct boxed answer and reports lm-eval metrics without raising."""

from __future__ import annotations

import threading
import time

import pytest

from rayeval.envs import MathRubric


@pytest.fixture
def rubric() -> MathRubric:
    return MathRubric()


def test_correct_and_incorrect_numbers(rubric: MathRubric) -> None:
    assert rubric.score("so \\boxed{18}", "18")[0] == 1.0
    assert rubric.score("so \\boxed{17}", "18")[0] == 0.0
    assert rubric.score("so \\boxed{18.00}", "18")[0] == 1.0
    assert rubric.score("no box, 18", "18")[0] == 0.0


def test_thousands_separators_dollars_and_units(rubric: MathRubric) -> None:
    assert rubric.score("\\boxed{1,000}", "1000")[0] == 1.0
    assert rubric.score("\\boxed{1\\,000}", "1000")[0] == 1.0
    assert rubric.score("\\boxed{\\$18}", "18")[0] == 1.0
    assert rubric.score("\\boxed{18 \\text{ dollars}}", "18")[0] == 1.0
    assert rubric.score("\\boxed{5,6}", "56")[0] == 0.0  # a list, not fifty-six


def test_fraction_vs_decimal_goes_through_math_verify(rubric: MathRubric) -> None:
    assert rubric.score("\\boxed{\\frac{1}{2}}", "0.5")[0] == 1.0
    assert rubric.score("\\boxed{\\frac{1}{3}}", "0.5")[0] == 0.0


def test_math_verify_works_off_the_main_thread(rubric: MathRubric) -> None:
    """Ray actors score in worker threads, where SIGALRM timeouts are unavailable."""
    assert _score_in_thread(rubric, "\\boxed{\\frac{1}{2}}", "0.5") == 1.0
    assert _score_in_thread(rubric, "\\boxed{\\frac{1}{3}}", "0.5") == 0.0


@pytest.mark.parametrize("on_main_thread", [True, False])
def test_pathological_answers_time_out_to_zero(on_main_thread: bool) -> None:
    """sympy would run forever on a power tower; off the main thread (no SIGALRM) the
    check runs in a child process that gets killed, on it math-verify's own timeout fires."""
    rubric = MathRubric(math_verify_timeout=1)
    answer = "\\boxed{9^{9^{9^{9}}}}"
    results: list[float] = []
    start = time.monotonic()
    if on_main_thread:
        results.append(rubric.score(answer, "18")[0])
    else:
        worker = threading.Thread(target=lambda: results.append(rubric.score(answer, "18")[0]), daemon=True)
        worker.start()
        worker.join(60)
    assert results == [0.0]
    assert time.monotonic() - start < 20
    # The worker is usable again after being killed.
    if not on_main_thread:
        assert _score_in_thread(rubric, "\\boxed{\\frac{36}{2}}", "18") == 1.0


def _score_in_thread(rubric: MathRubric, completion: str, answer: str) -> float:
    results: list[float] = []
    worker = threading.Thread(target=lambda: results.append(rubric.score(completion, answer)[0]), daemon=True)
    worker.start()
    worker.join(60)
    return results[0]


def test_metrics_follow_lm_eval(rubric: MathRubric) -> None:
    reward, metrics = rubric.score("work...\n#### 1,000\nThe answer is \\boxed{1000}", "1000")
    assert reward == 1.0
    assert metrics == {"strict": 1.0, "flexible": 1.0, "boxed": 1.0}
    _, metrics = rubric.score("The answer is 12.0", "12")
    assert metrics == {"strict": 0.0, "flexible": 0.0, "boxed": 0.0}  # lm-eval compares strings
    _, metrics = rubric.score("#### 9\nactually it is 12", "12")
    assert metrics == {"strict": 0.0, "flexible": 1.0, "boxed": 0.0}


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "\\boxed{}",
        "\\boxed{{{{{",
        "\\boxed{\\frac{}{}}",
        "\\boxed{" + "(" * 200 + "}",
        "\\boxed{" + "1+" * 2000 + "1}",
        "\\boxed{\\begin{pmatrix}1\\end{pmatrix}}",
        "\x00\\boxed{\udcff}",
        "</think>",
    ],
)
def test_garbage_never_raises(rubric: MathRubric, garbage: str) -> None:
    reward, metrics = rubric.score(garbage, "18")
    assert reward == 0.0
    assert set(metrics) == {"strict", "flexible", "boxed"}
