"""The public Python API: `aevaluate` is the source of truth, `evaluate` a thin blocking shell.

Both take one `EvalConfig` (or its fields as keyword arguments), so the CLI, notebooks and
config files describe a run the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import EvalConfig
from .driver import ProgressHook, run_eval
from .errors import ConfigError
from .results import RESULTS_FILE


@dataclass(frozen=True)
class EvalResult:
    """A finished run: where it is, its statistics and its ledger."""

    run_dir: Path
    metadata: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        return self.metadata["counts"]

    @property
    def avg_reward(self) -> float | None:
        return self.metadata["avg_reward"]

    @property
    def pass_at_k(self) -> dict[str, float]:
        return self.metadata["pass_at_k"]

    @property
    def results_path(self) -> Path:
        return self.run_dir / RESULTS_FILE

    def dataset(self) -> Any:
        """The rows as a `datasets.Dataset`, read from disk (never held by the driver)."""
        import datasets

        return datasets.load_dataset("json", data_files=str(self.results_path), split="train")


def _make_config(config: EvalConfig | None, kwargs: dict[str, Any]) -> EvalConfig:
    if config is not None:
        return config.replace(**kwargs) if kwargs else config
    unknown = set(kwargs) - EvalConfig.field_names()
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return EvalConfig(**kwargs)


@contextlib.contextmanager
def progress_bar(enabled: bool, description: str) -> Iterator[ProgressHook | None]:
    """A rich progress bar (terminal and Jupyter alike); None when disabled.

    In Jupyter rich draws into an ipywidgets Output; without ipywidgets it would only warn on
    every run, so there the bar is skipped (the summary is still printed by the caller).
    """
    if not enabled or (_in_jupyter() and importlib.util.find_spec("ipywidgets") is None):
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def hook(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield hook


def _in_jupyter() -> bool:
    from rich.console import Console

    return Console().is_jupyter


async def aevaluate(config: EvalConfig | None = None, /, **kwargs: Any) -> EvalResult:
    """Run an eval inside the caller's event loop (`await rayeval.aevaluate(...)` in Jupyter)."""
    cfg = _make_config(config, kwargs)
    if cfg.save_to_hf_hub:
        from .hub import check_hub_ready

        check_hub_ready(cfg.hf_hub_dataset_name)  # before any rollout: fail fast
    with progress_bar(cfg.show_progress, f"{cfg.env_id} / {cfg.model}") as hook:
        outcome = await run_eval(cfg, progress=hook)
    result = EvalResult(run_dir=outcome.run_dir, metadata=outcome.metadata)
    if cfg.save_to_hf_hub:
        await _push(cfg, result)
    return result


async def _push(cfg: EvalConfig, result: EvalResult) -> None:
    """Push the rows (-H) and record the repo id in metadata.json."""
    from .hub import default_dataset_name, push_results
    from .results import write_metadata

    name = cfg.hf_hub_dataset_name or default_dataset_name(
        cfg.env_id, cfg.model, result.run_dir.name
    )
    result.metadata["hf_hub_dataset"] = await asyncio.to_thread(push_results, result.run_dir, name)
    write_metadata(result.run_dir, result.metadata)


def evaluate(config: EvalConfig | None = None, /, **kwargs: Any) -> EvalResult:
    """Blocking form. Inside a running loop (Jupyter) it runs on a worker thread's own loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(aevaluate(config, **kwargs))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, aevaluate(config, **kwargs)).result()
