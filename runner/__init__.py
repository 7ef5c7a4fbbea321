"""rayeval.runner (installed from the top-level `runner/` folder)."""

if __name__ != "rayeval.runner":  # imported as a generic top-level module from a checkout
    raise ImportError("import rayeval.runner, not runner: this folder installs only as part of rayeval")

from .api import EvalResult, aevaluate, evaluate
from .config import EvalConfig
from .errors import ConfigError, EndpointUnreachable, RayevalError, ServerStartError

__all__ = [
    "ConfigError",
    "EndpointUnreachable",
    "EvalConfig",
    "EvalResult",
    "RayevalError",
    "ServerStartError",
    "aevaluate",
    "evaluate",
]
