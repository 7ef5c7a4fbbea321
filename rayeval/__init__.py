"""rayeval: a Ray-distributed evaluation runner for LLM environments.

This module only re-exports the public API; the code lives in `rayeval.runner`,
`rayeval.envs` and `rayeval.transport` (the top-level `runner/`, `envs/`, `transport/` folders).
"""

from pkgutil import extend_path

# Run from a source checkout, `import rayeval` may find this folder before the installed
# package; extending the path lets `rayeval.runner` etc. resolve to the installed copy.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"

from rayeval.runner import EvalConfig, EvalResult, aevaluate, evaluate  # noqa: E402

__all__ = ["EvalConfig", "EvalResult", "aevaluate", "evaluate", "__version__"]
