"""Shared fixtures: one real local Ray per test session, and paths to the shared GSM8K data."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GSM8K_DIR = (PROJECT_ROOT / ".." / "shared" / "data" / "gsm8k").resolve()


@pytest.fixture(scope="session")
def gsm8k_dir() -> Path:
    if not (GSM8K_DIR / "test.jsonl").exists():
        pytest.skip(f"GSM8K data not found at {GSM8K_DIR}")
    return GSM8K_DIR


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """Start Ray once for the whole session; CLI subprocesses join it with --ray-address.

    ray.init() in this process owns the head's processes and ray.shutdown() ends exactly
    those (by pid), so nothing else on the machine is touched.
    """
    import ray

    ray.init(
        num_cpus=4,  # logical CPUs: env servers take 0.25 each, so several fit on 2 cores
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def run_cli():
    """Run the installed `rayeval` console script as a user would, with a deadline."""
    exe = Path(sys.executable).with_name("rayeval")

    def run(*args: str, timeout: float = 240, env: dict[str, str] | None = None):
        return subprocess.run(
            [str(exe), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=PROJECT_ROOT,
            env={**os.environ, **(env or {})},
        )

    return run
