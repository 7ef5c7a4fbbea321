"""Which model-call failures are retried, and how long to wait between attempts.

Pure decisions, no I/O: tenacity runs the loop; this module tells it what is transient
(429, 5xx, connection errors, timeouts) and how long to back off (the server's Retry-After
when it sends one, else exponential backoff with jitter).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tenacity import RetryCallState, wait_exponential_jitter

RETRY_AFTER_CAP_S = 60.0
_backoff = wait_exponential_jitter(multiplier=0.5, max=20.0, jitter=0.5)


def classify(exc: BaseException) -> tuple[str, bool]:
    """(kind, retryable) for an exception raised by a model call or the scoring after it."""
    import openai

    if isinstance(exc, (asyncio.TimeoutError, openai.APITimeoutError)):
        return "model_timeout", True
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited", True
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500:
            return "model_server_error", True
        return f"model_http_{exc.status_code}", False
    if isinstance(exc, openai.APIConnectionError):
        return "model_connection", True
    return type(exc).__name__, False


def is_retryable(exc: BaseException) -> bool:
    return classify(exc)[1]


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The server's own wait hint (`retry-after-ms` or `Retry-After` in seconds), if any."""
    response: Any = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date: rare from model servers; fall back to backoff
        if seconds >= 0:
            return min(seconds, RETRY_AFTER_CAP_S)
    return None


def wait_before_retry(state: RetryCallState) -> float:
    """tenacity `wait=`: honour Retry-After, else exponential backoff with jitter."""
    exc = state.outcome.exception() if state.outcome else None
    hinted = retry_after_seconds(exc)
    return hinted if hinted is not None else _backoff(state)


def worst_case_backoff_s(max_retries: int) -> float:
    """An upper bound on the sleeping a rollout may do, for the driver's deadline."""
    return max_retries * max(RETRY_AFTER_CAP_S, 20.5)
