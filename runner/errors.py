"""Errors the runner shows to users.

    RayevalError                 base; its message is one line a CLI user can act on
    ├── ConfigError              bad options (flags, JSON, values out of range)
    ├── EndpointUnreachable      the model endpoint cannot be reached at all
    └── ServerStartError         env-server actors did not come up in time

Errors from `rayeval.envs` (EnvError and subclasses) are already one-line user errors and are
shown as they are; Ray's and pyzmq's exceptions are translated here, never shown raw.
"""

from __future__ import annotations


class RayevalError(Exception):
    """Base class: the message is meant to be printed as one line, without a traceback."""


class ConfigError(RayevalError, ValueError):
    """An option is missing, malformed or out of range."""


class EndpointUnreachable(RayevalError):
    """The OpenAI-compatible endpoint refused or did not answer the pre-flight probe."""


class ServerStartError(RayevalError):
    """An env-server actor failed to start or to report its address before the deadline."""
