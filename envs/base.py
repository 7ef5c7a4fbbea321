"""Core environment types: a dataset row, a rollout result, and the Environment base.

An environment owns its dataset and its scoring. Callers address work only by
`(example_id, sampling args, model)`; prompt text never travels in requests, so
`example_id` must be stable: it is the row's index in the source file's order.

This module knows nothing about Ray or ZeroMQ; `rollout` needs only an OpenAI-compatible
async client.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import RolloutError

# Used only if the installed openai SDK's signature cannot be introspected.
_FALLBACK_SDK_KWARGS: frozenset[str] = frozenset({
    "frequency_penalty", "logit_bias", "logprobs", "max_completion_tokens", "max_tokens",
    "metadata", "n", "presence_penalty", "reasoning_effort", "response_format", "seed",
    "service_tier", "stop", "store", "stream_options", "temperature", "tool_choice",
    "tools", "top_logprobs", "top_p", "user", "parallel_tool_calls",
})
# Arguments `rollout` sets itself; they may not come in through sampling_args.
_RESERVED_KWARGS: frozenset[str] = frozenset({
    "model", "messages", "extra_headers", "extra_query", "timeout", "stream",
})


@functools.lru_cache(maxsize=1)
def sdk_sampling_kwargs() -> frozenset[str]:
    """Keyword arguments the installed openai SDK's `chat.completions.create` accepts.

    Read from the SDK itself so new SDK parameters pass through as real arguments
    without a code change; everything else goes to `extra_body` (see `split_sampling_args`).
    """
    try:
        from openai.resources.chat.completions import AsyncCompletions

        params = inspect.signature(AsyncCompletions.create).parameters
        names = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    except Exception:  # pragma: no cover - depends on SDK internals
        return _FALLBACK_SDK_KWARGS
    names -= _RESERVED_KWARGS | {"extra_body"}
    return frozenset(names) if names else _FALLBACK_SDK_KWARGS


def split_sampling_args(sampling_args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split sampling args into (SDK kwargs, extra_body) for the openai client.

    The SDK rejects unknown keyword arguments, while servers such as vLLM accept extra
    sampling fields (`top_k`, `min_p`, `repetition_penalty`, ...) in the JSON body. An
    explicit `extra_body` mapping in `sampling_args` is merged in (its keys win).
    """
    known = sdk_sampling_kwargs()
    direct: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in sampling_args.items():
        if key in _RESERVED_KWARGS:
            raise ValueError(f"sampling arg {key!r} is set by the environment and cannot be overridden")
        if key == "extra_body":
            if not isinstance(value, Mapping):
                raise ValueError("sampling arg 'extra_body' must be a mapping")
            continue
        (direct if key in known else extra)[key] = value
    explicit = sampling_args.get("extra_body")
    if explicit:
        extra.update(explicit)
    return direct, extra


@dataclass(frozen=True)
class Row:
    """One dataset example. `example_id` is its index in the source file's order."""

    example_id: int
    prompt: list[dict[str, str]]  # chat messages sent verbatim (system + user)
    answer: str  # gold answer used for scoring
    info: dict[str, Any] = field(default_factory=dict)  # extra data (e.g. full solution)


@dataclass
class RolloutOutput:
    """Result of one model call on one row, already scored."""

    completion: str
    reward: float
    metrics: dict[str, float]
    usage: dict[str, int] | None  # {"prompt_tokens", "completion_tokens"} when reported
    finish_reason: str | None


class Environment(abc.ABC):
    """A dataset plus a way to score completions on it.

    Subclasses set `env_id`, pass their rows to `__init__`, and implement `score`.
    """

    env_id: str = ""

    def __init__(self, rows: Sequence[Row]) -> None:
        self._rows: tuple[Row, ...] = tuple(rows)
        for index, row in enumerate(self._rows):
            if row.example_id != index:
                raise ValueError(f"row at position {index} has example_id {row.example_id}")

    @property
    def rows(self) -> Sequence[Row]:
        """All rows in file order; `rows[i].example_id == i`."""
        return self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def row(self, example_id: int) -> Row:
        """The row with this example_id; IndexError (with the valid range) otherwise.

        Negative ids are rejected rather than counted from the end: an id is a name for
        one example, not a Python index.
        """
        if isinstance(example_id, bool) or not isinstance(example_id, int):
            raise IndexError(f"{self.env_id}: example_id must be an int, got {example_id!r}")
        if not 0 <= example_id < len(self._rows):
            raise IndexError(
                f"{self.env_id}: example_id {example_id} out of range "
                f"(dataset has {len(self._rows)} rows: 0..{len(self._rows) - 1})"
            )
        return self._rows[example_id]

    @abc.abstractmethod
    def score(self, completion: str, row: Row) -> tuple[float, dict[str, float]]:
        """Grade a completion for `row`: (reward, metrics). Must not raise on odd text."""

    async def rollout(
        self,
        client: Any,
        model: str,
        example_id: int,
        sampling_args: Mapping[str, Any],
        extra_headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> RolloutOutput:
        """Ask the model once about `example_id` and score the reply.

        `client` is an `openai.AsyncOpenAI`. Client exceptions propagate unchanged so the
        caller can classify them (retryable, fatal, ...). Scoring is synchronous and
        usually takes microseconds; math-verify fallbacks can take milliseconds.
        """
        row = self.row(example_id)
        direct, extra_body = split_sampling_args(sampling_args or {})
        # The request body is built here and posted raw: `chat.completions.create` spends about a
        # quarter of a rollout's CPU re-walking plain-dict params against its TypedDicts and
        # building pydantic models from the reply, work this JSON-in, JSON-out path never needs.
        # Auth, base URL, timeouts and the client's own retries stay the SDK's.
        body = {**direct, **extra_body, "model": model, "messages": row.prompt}
        options: dict[str, Any] = {}
        if extra_headers:
            options["headers"] = extra_headers
        if timeout is not None:
            # Omitted when None: the SDK reads an explicit None as "no timeout at all",
            # whereas a caller passing None means "use the client's default".
            options["timeout"] = timeout
        response = await client.post("/chat/completions", cast_to=object, body=body, options=options)
        choices = response.get("choices") if isinstance(response, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise RolloutError(f"{self.env_id}: server returned no choices for example {example_id}")
        choice = choices[0]
        content = (choice.get("message") or {}).get("content")
        completion = content if isinstance(content, str) else ""
        reward, metrics = self.score(completion, row)
        return RolloutOutput(
            completion=completion,
            reward=float(reward),
            metrics=metrics,
            usage=_usage_dict(response.get("usage")),
            finish_reason=choice.get("finish_reason"),
        )


def _usage_dict(usage: Any) -> dict[str, int] | None:
    """Token counts from a response's usage object, or None if the server sent none."""
    if not isinstance(usage, dict):
        return None
    prompt_tokens = usage.get("prompt_tokens")
    completion_tokens = usage.get("completion_tokens")
    if not isinstance(prompt_tokens, int) or not isinstance(completion_tokens, int):
        return None
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
