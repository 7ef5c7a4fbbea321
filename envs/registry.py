"""Find and build environments by id.

Built-in environments are listed in `BUILTIN_ENVIRONMENTS`. Third-party packages add
environments through the entry-point group `rayeval.envs`: the entry point's name is the
env id and its value a class or callable taking the env args as keyword arguments and
returning an `Environment`, e.g. in pyproject.toml:

    [project.entry-points."rayeval.envs"]
    my-math = "my_pkg.env:MyMathEnv"

Built-ins win over entry points of the same name: an id such as "gsm8k" then means the
same dataset and grading on every machine, whatever else happens to be installed (the
shadowed entry point is ignored with a warning). Among entry points sharing a name, the
first one importlib.metadata reports is used.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .base import Environment
from .errors import EnvArgsError, EnvError, EnvironmentNotFound
from .gsm8k import GSM8K

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP: str = "rayeval.envs"

BUILTIN_ENVIRONMENTS: dict[str, Callable[..., Environment]] = {
    "gsm8k": GSM8K,
}


def _entry_points() -> dict[str, EntryPoint]:
    """Installed `rayeval.envs` entry points by name (first wins), read fresh each call."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def available_environments() -> list[str]:
    """Sorted ids of all built-in and installed environments."""
    return sorted(set(BUILTIN_ENVIRONMENTS) | set(_entry_points()))


def _check_env_args(env_id: str, factory: Callable[..., Any], env_args: Mapping[str, Any]) -> None:
    """Reject keys the factory does not accept, naming the first bad one.

    Done before calling the factory so a typo in the CLI's `-a` JSON gives a one-line
    EnvArgsError instead of a TypeError traceback from deep inside a constructor.
    Factories taking **kwargs, or without an inspectable signature, validate themselves.
    """
    for key in env_args:
        if not isinstance(key, str):
            raise EnvArgsError(env_id, None, f"argument names must be strings, got {key!r}")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    kinds = {p.kind for p in params.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return
    accepted = [
        name for name, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    for key in env_args:
        if key not in accepted:
            listed = ", ".join(accepted) if accepted else "(none)"
            raise EnvArgsError(env_id, key, f"unknown argument; accepted arguments: {listed}")


def _resolve(env_id: str) -> Callable[..., Environment]:
    """The factory for `env_id`: a built-in, else an installed entry point."""
    eps = _entry_points()
    if env_id in BUILTIN_ENVIRONMENTS:
        if env_id in eps:
            logger.warning(
                "entry point %r (%s) is shadowed by the built-in environment of the same name",
                env_id, eps[env_id].value,
            )
        return BUILTIN_ENVIRONMENTS[env_id]
    if env_id in eps:
        try:
            factory = eps[env_id].load()
        except Exception as exc:
            raise EnvError(
                f"environment {env_id!r}: cannot import entry point {eps[env_id].value!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not callable(factory):
            raise EnvError(f"environment {env_id!r}: entry point {eps[env_id].value!r} is not callable")
        return factory
    raise EnvironmentNotFound(env_id, set(BUILTIN_ENVIRONMENTS) | set(eps))


def load_environment(env_id: str, env_args: Mapping[str, Any] | None = None) -> Environment:
    """Build the environment `env_id` with `env_args` (keyword arguments, e.g. from `-a`).

    Raises EnvironmentNotFound (lists available ids), EnvArgsError (bad key or type),
    DatasetLoadError (data missing/unreadable) or EnvError (broken plugin).
    """
    if not isinstance(env_id, str) or not env_id:
        raise EnvironmentNotFound(str(env_id), available_environments())
    args: Mapping[str, Any] = {} if env_args is None else env_args
    if not isinstance(args, Mapping):
        raise EnvArgsError(env_id, None, f"expected a JSON object, got {type(args).__name__}")
    factory = _resolve(env_id)
    _check_env_args(env_id, factory, args)
    env = factory(**args)
    if not isinstance(env, Environment):
        raise EnvError(f"environment {env_id!r}: factory returned {type(env).__name__}, not an Environment")
    return env
