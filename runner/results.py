"""Where results go: rows streamed to `results.jsonl` as they arrive, `metadata.json` at the end.

The driver never holds every reply: each row is encoded once, appended, and flushed in small
batches, so a crash loses at most the rows of the last unflushed batch and memory stays flat.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.jsonl"
METADATA_FILE = "metadata.json"
ROW_VERSION = 1


@dataclass
class ResultRow:
    """One rollout's outcome, as persisted. `error` is None or {kind, message, ...}."""

    example_id: int
    rollout_idx: int
    answer: str | None
    completion: str | None
    reward: float | None
    metrics: dict[str, float]
    error: dict[str, Any] | None
    timing: dict[str, float]
    usage: dict[str, int] | None
    server: int | None = None
    version: int = ROW_VERSION


@dataclass
class Counts:
    """The ledger every run ends with: sent = succeeded + errored, and lost must be 0."""

    sent: int = 0
    succeeded: int = 0
    errored: int = 0

    @property
    def lost(self) -> int:
        return self.sent - self.succeeded - self.errored

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "lost": self.lost}


def default_run_dir(output_root: str, env_id: str, model: str) -> Path:
    """vf-eval's layout: <root>/<env>--<model>/<run_id>/ (slashes in model names become --)."""
    safe_model = re.sub(r"[^A-Za-z0-9._-]+", "--", model.replace("/", "--"))
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    return Path(output_root) / f"{env_id}--{safe_model}" / run_id


class ResultWriter:
    """Appends rows to results.jsonl; flushes every `flush_every` rows or `flush_seconds`."""

    def __init__(self, run_dir: Path, *, flush_every: int = 256, flush_seconds: float = 0.5):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / RESULTS_FILE
        self._file = open(self.path, "a", encoding="utf-8")
        self._flush_every = flush_every
        self._flush_seconds = flush_seconds
        self._unflushed = 0
        self._last_flush = time.monotonic()
        self.rows_written = 0

    def write(self, row: ResultRow) -> None:
        self._file.write(json.dumps(asdict(row), ensure_ascii=False, separators=(",", ":")) + "\n")
        self.rows_written += 1
        self._unflushed += 1
        if self._unflushed >= self._flush_every or (
            time.monotonic() - self._last_flush >= self._flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        self._file.flush()
        self._unflushed = 0
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            os.fsync(self._file.fileno())
            self._file.close()


def write_metadata(run_dir: Path, metadata: dict[str, Any]) -> Path:
    """Atomic write (temp file + rename) so a reader never sees half a metadata.json."""
    path = run_dir / METADATA_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metadata, indent=2, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


@dataclass
class Timing:
    start: float = field(default_factory=time.time)
    first_result: float | None = None
    last_result: float | None = None
    end: float | None = None
