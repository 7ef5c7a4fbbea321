"""Publishing a run's rows to the Hugging Face Hub (`-H/--save-to-hf-hub`, `-D NAME`).

Two halves, split in time on purpose:

* `check_hub_ready` runs *before* the eval starts. A missing token or a malformed repo id is
  found in a second, not after an hour of rollouts whose push would then fail.
* `push_results` runs after the run: `results.jsonl` is loaded with `datasets` (the same reader
  users get, so what is pushed is what `EvalResult.dataset()` shows) and pushed as a dataset.

The Hub's repo-id rules forbid `--` and `..`, so the default name joins env, model and run id
with single dashes: `gsm8k-Qwen-Qwen3-4B-20250101-120000-abc123`.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ConfigError
from .results import RESULTS_FILE

MAX_NAME = 96
"""The Hub's limit on the name part of a repo id."""


def default_dataset_name(env_id: str, model: str, run_id: str) -> str:
    """`<env>-<model>-<run_id>`, reduced to what the Hub accepts as a repo name."""
    raw = f"{env_id}-{model}-{run_id}"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw)
    name = re.sub(r"-{2,}", "-", name)
    name = re.sub(r"\.{2,}", ".", name)
    name = name[:MAX_NAME].strip("-.")
    return name or "rayeval-results"


def validate_dataset_name(name: str) -> None:
    """Refuse a repo id the Hub would refuse, naming the option (`-D`)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as exc:
        raise ConfigError(f"-D/--hf-hub-dataset-name {name!r} is not a valid repo id: {exc}") from None


def check_hub_ready(dataset_name: str | None) -> None:
    """Fail fast, before any rollout: a token must be configured and the name must be valid.

    `huggingface_hub.get_token()` looks at HF_TOKEN, then the token file under HF_HOME that
    `hf auth login` writes; it never contacts the Hub, so this check works offline.
    """
    import huggingface_hub

    if dataset_name is not None:
        validate_dataset_name(dataset_name)
    if huggingface_hub.get_token() is None:
        raise ConfigError(
            "-H/--save-to-hf-hub: no Hugging Face token: run `hf auth login` or set HF_TOKEN"
        )


def push_results(run_dir: Path, dataset_name: str) -> str:
    """Push `run_dir/results.jsonl` as a dataset; returns the repo id it was pushed to.

    Blocking (network I/O); the API calls it on a worker thread.
    """
    import datasets

    ds = datasets.Dataset.from_json(str(Path(run_dir) / RESULTS_FILE))
    ds.push_to_hub(dataset_name)
    return dataset_name
