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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.jsonl"
METADATA_FILE = "metadata.json"
ROW_VERSION = 1


@dataclass
class ResultRow:
    """One rollout's outcome, as persisted. `error` is None or {kind, message, ...}.

    On disk, empty `metrics`/`timing` are written as null (see `row_record`).
    """

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
    retried: int = 0
    """Model-call attempts beyond the first (429/5xx/timeouts), summed over rollouts."""
    redelivered: int = 0
    """Requests re-sent because their env server went down."""
    duplicates_dropped: int = 0
    """Results for a rollout already recorded: never written twice (by construction 0)."""
    late_replies: int = 0
    """Transport replies nobody waited for any more (a ping past its deadline, a request
    already moved to another server): dropped by the client, never written."""

    @property
    def lost(self) -> int:
        return self.sent - self.succeeded - self.errored

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "lost": self.lost}


def safe_model_name(model: str) -> str:
    """Model names as folder names: slashes and other odd characters become --."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", model.replace("/", "--"))


def default_run_dir(output_root: str, env_id: str, model: str) -> Path:
    """vf-eval's layout: <root>/<env>--<model>/<run_id>/."""
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    return Path(output_root) / f"{env_id}--{safe_model_name(model)}" / run_id


ERROR_KEYS = ("kind", "message", "retryable", "attempts")


def row_record(row: ResultRow) -> dict[str, Any]:
    """The row as written: one shape for every row, so Arrow readers infer one schema.

    `datasets.load_dataset("json", ...)` infers column types block by block. An errored row's
    empty `metrics`/`timing` ({}) and an error record without `attempts` would disagree with
    the successful rows' structs, and the columns would degrade to untyped JSON. So empty dicts
    are written as null and every error record carries the same keys (missing ones as null).
    """
    record = asdict(row)
    for key in ("metrics", "timing"):
        if not record[key]:
            record[key] = None
    if record["error"] is not None:
        record["error"] = {**{k: None for k in ERROR_KEYS}, **record["error"]}
    return record


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

    def write(self, row: ResultRow) -> None:
        record = row_record(row)
        self._file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
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
