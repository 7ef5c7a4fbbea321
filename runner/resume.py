"""Resuming a run (`-R [RUN_DIR]`): keep what succeeded, rerun what is missing or errored.

A run writes metadata.json with `complete: false` before its first request, so a driver killed
an hour in leaves a folder that says what it was. On resume the results file is compacted:
successful rows are kept once each, errored rows are dropped (they will be run again), and a
torn last line (the crash cut a write short) is discarded. The compacted file replaces the old
one atomically, so the run ends with exactly n x r unique rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import EvalConfig
from .errors import ConfigError
from .results import METADATA_FILE, RESULTS_FILE, safe_model_name


@dataclass
class ResumeState:
    run_dir: Path
    done: set[tuple[int, int]]
    kept: int
    dropped_errored: int
    dropped_torn: int


def find_latest_incomplete(output_root: str, env_id: str, model: str) -> Path:
    """The newest run folder of this env and model whose metadata says it is not complete."""
    parent = Path(output_root) / f"{env_id}--{safe_model_name(model)}"
    candidates = []
    for run_dir in parent.glob("*/"):
        meta = _read_metadata(run_dir)
        if meta is not None and not meta.get("complete", False):
            candidates.append(run_dir)
    if not candidates:
        raise ConfigError(f"-R: no incomplete run of {env_id} with {model} under {parent}")
    return max(candidates, key=lambda p: (p / METADATA_FILE).stat().st_mtime)


def _read_metadata(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return None


def check_matches(run_dir: Path, config: EvalConfig) -> None:
    """Refuse to mix runs: env, model and r must be those the folder was started with."""
    meta = _read_metadata(run_dir)
    if meta is None:
        raise ConfigError(f"-R {run_dir}: no readable {METADATA_FILE}; is this a rayeval run folder?")
    for key, ours in (
        ("env_id", config.env_id),
        ("model", config.model),
        ("rollouts_per_example", config.rollouts_per_example),
    ):
        if meta.get(key) != ours:
            raise ConfigError(f"-R {run_dir}: {key} is {meta.get(key)!r} there, {ours!r} now")


def compact_results(run_dir: Path, on_kept: Callable[[dict[str, Any]], None]) -> ResumeState:
    """Rewrite results.jsonl with each successful (example, rollout) once; report the rest."""
    path = run_dir / RESULTS_FILE
    done: set[tuple[int, int]] = set()
    errored = torn = 0
    tmp = path.with_suffix(".jsonl.compact")
    with open(tmp, "w", encoding="utf-8") as out:
        if path.exists():
            with open(path, encoding="utf-8", errors="replace") as src:
                for line in src:
                    try:
                        row = json.loads(line)
                        key = (int(row["example_id"]), int(row["rollout_idx"]))
                    except (ValueError, KeyError, TypeError):
                        torn += 1  # a write cut short by the crash
                        continue
                    if row.get("error") is not None or row.get("reward") is None:
                        errored += 1
                        continue
                    if key in done:
                        continue
                    done.add(key)
                    out.write(line if line.endswith("\n") else line + "\n")
                    on_kept(row)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return ResumeState(run_dir, done, len(done), errored, torn)
