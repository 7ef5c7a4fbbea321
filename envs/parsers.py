"""Answer extraction from model completions, kept apart from scoring.

Parsers only turn text into candidate answer strings; deciding whether a candidate is
right lives in `rubrics.py`. Keeping them separate lets the same extraction feed several
metrics (boxed reward, lm-eval strict-match, lm-eval flexible-extract) and be tested on
its own.

The lm-eval functions reproduce lm-evaluation-harness's gsm8k filters exactly (regexes,
which match is taken, and the normalisation its `exact_match` applies before comparing),
so the `strict` / `flexible` metrics can be compared with published lm-eval numbers.
"""

from __future__ import annotations

import re

THINK_CLOSE: str = "</think>"

# lm-eval gsm8k "strict-match": first "#### N".
_STRICT_RE: re.Pattern[str] = re.compile(r"#### (\-?[0-9\.\,]+)")
# lm-eval gsm8k "flexible-extract": last number-looking token (two alternatives -> tuples).
_FLEXIBLE_RE: re.Pattern[str] = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
# lm-eval gsm8k exact_match `regexes_to_ignore`, applied in this order to both sides.
_LM_EVAL_IGNORE: tuple[re.Pattern[str], ...] = (
    re.compile(","),
    re.compile(r"\$"),
    re.compile(r"(?s).*#### "),
    re.compile(r"\.$"),
)

_BOXED_COMMANDS: tuple[str, ...] = ("\\boxed", "\\fbox")


def strip_thinking(text: str) -> str:
    """Return the text after the last `</think>`, or the whole text when there is none.

    Reasoning models may write tentative boxed answers while thinking; only the final
    answer section should be graded.
    """
    cut = text.rfind(THINK_CLOSE)
    return text if cut < 0 else text[cut + len(THINK_CLOSE):]


def _braced_content(text: str, open_idx: int) -> str | None:
    """Content of the brace group opening at `open_idx`, or None if it never closes.

    Backslash-escaped characters (`\\{`, `\\}`) are skipped so literal braces in LaTeX
    sets do not unbalance the count.
    """
    depth = 0
    i = open_idx
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_idx + 1:i]
        i += 1
    return None


def _boxed_at(text: str, cmd_end: int) -> str | None:
    """Parse the argument of a `\\boxed` whose command name ends at `cmd_end`."""
    if cmd_end < len(text) and text[cmd_end] == "{":
        return _braced_content(text, cmd_end)
    # `\boxed 42` form: a space, then one token up to whitespace or a math delimiter.
    if cmd_end < len(text) and text[cmd_end] == " ":
        match = re.match(r" +([^\s$]+)", text[cmd_end:])
        if match:
            return match.group(1).rstrip(".")
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` after the last `</think>`, else None.

    Nested braces are kept (`\\boxed{\\frac{1}{2}}` -> `\\frac{1}{2}`); `\\fbox` and the
    brace-less `\\boxed 42` form are accepted too. An unclosed final box (a truncated
    reply) is skipped in favour of the previous complete one.
    """
    if not isinstance(text, str):
        return None
    answer_part = strip_thinking(text)
    starts: list[tuple[int, int]] = []
    for cmd in _BOXED_COMMANDS:
        pos = answer_part.find(cmd)
        while pos >= 0:
            end = pos + len(cmd)
            # Skip longer command names that merely start with "\boxed" (e.g. "\boxedx").
            if end >= len(answer_part) or not answer_part[end].isalpha():
                starts.append((pos, end))
            pos = answer_part.find(cmd, pos + 1)
    for _, cmd_end in sorted(starts, reverse=True):
        content = _boxed_at(answer_part, cmd_end)
        if content is not None:
            return content.strip()
    return None


def lm_eval_normalize(answer: str) -> str:
    """Apply lm-eval gsm8k's exact_match normalisation (commas, `$`, `#### `, trailing `.`).

    Also lower-cases (its `ignore_case: true`); digits are unaffected.
    """
    out = answer
    for pattern in _LM_EVAL_IGNORE:
        out = pattern.sub("", out)
    return out.lower()


def strict_answer(text: str) -> str | None:
    """lm-eval gsm8k strict-match: the first `#### N` number, normalised; None if absent.

    Like lm-eval this looks at the whole completion (thinking included).
    """
    if not isinstance(text, str):
        return None
    matches = _STRICT_RE.findall(text)
    if not matches:
        return None
    return lm_eval_normalize(matches[0].strip())


def flexible_answer(text: str) -> str | None:
    """lm-eval gsm8k flexible-extract: the last number-like token, normalised; None if absent.

    Uses lm-eval's regex `(-?[$0-9.,]{2,})|(-?[0-9]+)` verbatim, so it inherits its quirks
    (e.g. a trailing "..." is a match and normalises to "..", which never equals a gold).
    """
    if not isinstance(text, str):
        return None
    matches = _FLEXIBLE_RE.findall(text)
    if not matches:
        return None
    groups = [g for g in matches[-1] if g]
    if not groups:
        return None
    return lm_eval_normalize(groups[0].strip())
