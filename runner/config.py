"""One frozen, typed config for an eval, shared by the CLI, the Python API and config files.

Everything that decides what a run does lives here, so `evaluate()`, `aevaluate()` and the CLI
do not re-thread the same keywords three times. Validation happens once, in `__post_init__`,
and raises `ConfigError` with a message naming the option.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

SIM_MODEL = "sim"
"""`-m sim` starts the project's simulated OpenAI-compatible server instead of calling a model."""

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_API_KEY_VAR = "OPENAI_API_KEY"

# vf-eval's provider shorthands that matter here: (base URL, API-key variable name).
PROVIDERS: dict[str, tuple[str, str]] = {
    "local": ("http://localhost:8000/v1", "VLLM_API_KEY"),
    "vllm": ("http://localhost:8000/v1", "VLLM_API_KEY"),
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "deepseek": ("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
}

_ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate, against which endpoint, how much, and where results go."""

    env_id: str
    model: str
    env_args: dict[str, Any] = field(default_factory=dict)
    base_url: str | None = None
    """None means the provider default (or the simulator's URL when `model == "sim"`)."""
    api_key_var: str = DEFAULT_API_KEY_VAR
    """The *name* of the environment variable holding the key; the key itself never travels."""
    num_examples: int = 5
    """-1 = every example in the dataset."""
    rollouts_per_example: int = 3
    max_concurrent: int = 32
    """Rollouts in flight at once; -1 = unlimited."""
    sampling_args: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    """Write exactly here; None = ./outputs/evals/<env>--<model>/<run_id>/."""
    output_root: str = "./outputs/evals"
    num_servers: int = 2
    server_cpus: float = 0.25
    """Fractional CPU per env-server actor, so several fit on a small machine."""
    ray_address: str | None = None
    """None = RAY_ADDRESS if set, else a local Ray started for this run."""
    sim_args: dict[str, Any] = field(default_factory=dict)
    request_timeout: float = 600.0
    """Seconds one model call may take before it counts as failed (then retried)."""
    max_retries: int = 3
    """Model-call retries on 429/5xx/connection errors, by the openai client with backoff."""
    verbose: bool = False
    show_progress: bool = True
    resume: str | bool | None = None
    """-R: True = the newest incomplete run of this env and model; a str = that run folder."""
    max_server_restarts: int = 3
    """How often Ray may restart one env-server actor before its work moves to the others."""
    server_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each env server holds, e.g. {"envworker": 1}."""
    ship_code: bool | None = None
    """Ship rayeval's code to the cluster (runtime_env py_modules); None = only when joining one."""
    server_hang_timeout: float = 30.0
    """Seconds an env server whose process lives may leave pings unanswered before it counts as
    hung and is restarted (a dead process is noticed within about a second regardless)."""
    save_to_hf_hub: bool = False
    """-H: push results.jsonl to the Hugging Face Hub as a dataset after the run."""
    hf_hub_dataset_name: str | None = None
    """-D: the dataset repo id; None = <env>-<model>-<run_id>, sanitised (runner/hub.py)."""

    def __post_init__(self) -> None:
        if not self.env_id or not isinstance(self.env_id, str):
            raise ConfigError("env id must be a non-empty string")
        if not self.model:
            raise ConfigError("-m/--model must not be empty")
        _check_dict("env_args (-a/--env-args)", self.env_args)
        _check_dict("sampling_args (-S/--sampling-args)", self.sampling_args)
        _check_dict("sim_args (--sim-args)", self.sim_args)
        _check_dict("server_resources (--server-resources)", self.server_resources)
        for name, amount in self.server_resources.items():
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount <= 0:
                raise ConfigError(f"--server-resources: {name!r} must be a positive number, got {amount!r}")
        if self.num_examples == 0 or self.num_examples < -1:
            raise ConfigError(f"-n/--num-examples must be >= 1 or -1 (all), got {self.num_examples}")
        if self.rollouts_per_example < 1:
            raise ConfigError(
                f"-r/--rollouts-per-example must be >= 1, got {self.rollouts_per_example}"
            )
        if self.max_concurrent == 0 or self.max_concurrent < -1:
            raise ConfigError(
                f"-c/--max-concurrent must be >= 1 or -1 (unlimited), got {self.max_concurrent}"
            )
        if self.num_servers < 1:
            raise ConfigError(f"--num-servers must be >= 1, got {self.num_servers}")
        if not 0 < self.server_cpus <= 64:
            raise ConfigError(f"server CPUs must be in (0, 64], got {self.server_cpus}")
        if not _ENV_VAR_NAME.match(self.api_key_var):
            raise ConfigError(
                f"-k/--api-key-var takes the NAME of an environment variable, got {self.api_key_var!r}"
            )
        if self.request_timeout <= 0:
            raise ConfigError(f"--request-timeout must be > 0, got {self.request_timeout}")
        if self.server_hang_timeout <= 0:
            raise ConfigError(f"--server-hang-timeout must be > 0, got {self.server_hang_timeout}")
        if self.max_retries < 0:
            raise ConfigError(f"--max-retries must be >= 0, got {self.max_retries}")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"-b/--api-base-url must start with http:// or https://, got {self.base_url!r}")

    @property
    def is_sim(self) -> bool:
        return self.model == SIM_MODEL

    def replace(self, **changes: Any) -> EvalConfig:
        return dataclasses.replace(self, **changes)

    def public_dict(self) -> dict[str, Any]:
        """The config as recorded in metadata.json (no secrets exist in it to strip)."""
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}


def _check_dict(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, got {type(value).__name__}")


def merge_sampling_args(
    sampling_args: dict[str, Any] | None, max_tokens: int | None, temperature: float | None
) -> dict[str, Any]:
    """vf-eval's rule: keys given in -S win over -t/-T."""
    merged = dict(sampling_args or {})
    if max_tokens is not None:
        merged.setdefault("max_tokens", max_tokens)
    if temperature is not None:
        merged.setdefault("temperature", temperature)
    return merged
