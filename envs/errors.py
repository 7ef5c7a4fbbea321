"""Errors raised by environments, meant to be shown to a CLI user as one line.

Every error here subclasses `EnvError`, so a runner can catch the family with one
`except` and print `str(exc)` without a traceback: the messages are written to be
complete on their own (what failed, with which name or path, and what to try).

Exceptions raised by the model client during a rollout are *not* wrapped in these
types: the runner classifies transport/HTTP failures itself and must see them as-is.
"""

from __future__ import annotations

from collections.abc import Iterable


class EnvError(Exception):
    """Base class for every environment-side failure that is the user's to fix."""


class EnvironmentNotFound(EnvError):
    """No built-in or installed environment has the requested id."""

    def __init__(self, env_id: str, available: Iterable[str]) -> None:
        self.env_id: str = env_id
        self.available: list[str] = sorted(available)
        listed = ", ".join(self.available) if self.available else "(none)"
        super().__init__(f"unknown environment {env_id!r}; available environments: {listed}")


class EnvArgsError(EnvError):
    """Environment arguments (the CLI's `-a` JSON) have an unknown key or a wrong type."""

    def __init__(self, env_id: str, key: str | None, problem: str) -> None:
        self.env_id: str = env_id
        self.key: str | None = key
        where = f"argument {key!r}" if key is not None else "arguments"
        super().__init__(f"environment {env_id!r}: bad {where}: {problem}")


class DatasetLoadError(EnvError):
    """The dataset could not be found, read or understood."""


class RolloutError(EnvError):
    """The server answered, but the answer cannot be turned into a rollout (e.g. no choices)."""
