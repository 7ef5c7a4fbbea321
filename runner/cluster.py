"""Ray: joining a cluster or starting a local one, and how env-server actors are placed.

Kept apart from the driver so placement and code shipping (runtime_env) have one home.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .config import EvalConfig


def connect(config: EvalConfig) -> bool:
    """Join --ray-address / RAY_ADDRESS, or start a local Ray; True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    address = config.ray_address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {
        "logging_level": logging.INFO if config.verbose else logging.WARNING,
        "log_to_driver": config.verbose,
    }
    if address:
        ray.init(address=address, **kwargs)
    else:
        # No dashboard: it costs ~2 s of start-up and a run does not need it.
        ray.init(include_dashboard=False, **kwargs)
    return True


def shutdown() -> None:
    import ray

    ray.shutdown()


def actor_options(config: EvalConfig) -> dict[str, Any]:
    """Extra `.options(...)` for env-server actors (placement, runtime_env)."""
    return {}
