"""rayeval.envs (installed from the top-level `envs/` folder)."""

if __name__ != "rayeval.envs":  # imported as a generic top-level module from a checkout
    raise ImportError("import rayeval.envs, not envs: this folder installs only as part of rayeval")

from .base import Environment, RolloutOutput, Row
from .errors import DatasetLoadError, EnvArgsError, EnvError, EnvironmentNotFound, RolloutError
from .gsm8k import GSM8K
from .parsers import extract_boxed, flexible_answer, strict_answer
from .registry import available_environments, load_environment
from .rubrics import MathRubric

__all__ = [
    "GSM8K",
    "DatasetLoadError",
    "EnvArgsError",
    "EnvError",
    "Environment",
    "EnvironmentNotFound",
    "MathRubric",
    "RolloutError",
    "RolloutOutput",
    "Row",
    "available_environments",
    "extract_boxed",
    "flexible_answer",
    "load_environment",
    "strict_answer",
]
