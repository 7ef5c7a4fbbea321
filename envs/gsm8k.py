"""GSM8K grade-school math, graded on the last boxed answer.

Data comes from the Hugging Face Hub (`openai/gsm8k`, config `main`) by default, or from
local files via `data_path` for machines without Hub access: a folder holding
`{split}.jsonl` or HF-style parquet shards, or a single .jsonl/.json/.parquet file.
jsonl is read with the standard library; `datasets` is imported only for the Hub and
parquet paths because importing it costs about a second of start-up.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import Environment, Row
from .errors import DatasetLoadError, EnvArgsError
from .rubrics import MathRubric

HF_DATASET: str = "openai/gsm8k"
HF_CONFIG: str = "main"

DEFAULT_SYSTEM_PROMPT: str = (
    "Solve the math problem. Reason step by step, then give the final answer "
    "as a number inside \\boxed{}."
)

# Gold answers end in "#### N"; N may carry thousands commas (stripped) or a sign.
_GOLD_RE: re.Pattern[str] = re.compile(r"####\s*([^\n]+?)\s*$")
# Folder layouts tried in order; the first that yields files wins.
_PARQUET_PATTERNS: tuple[str, ...] = (
    "{split}.parquet",
    "{split}-*.parquet",
    "main/{split}-*.parquet",
    "main/{split}.parquet",
    "data/{split}-*.parquet",
    "data/{split}.parquet",
)


def gold_answer(solution: str) -> str | None:
    """The final number after `####` with commas removed, or None if there is none."""
    match = _GOLD_RE.search(solution)
    if match is None:
        return None
    value = match.group(1).replace(",", "").strip()
    return value or None


def _read_jsonl(path: Path) -> list[Any]:
    """Read one JSON value per non-blank line; errors name the file and line."""
    records: list[Any] = []
    try:
        with path.open("r", encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetLoadError(f"{path}: line {line_no} is not valid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetLoadError(f"cannot read {path}: {exc}") from None
    return records


def _read_json(path: Path) -> list[Any]:
    """Read a .json file holding a list of records (or, as HF allows, JSON lines)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetLoadError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _read_jsonl(path)
    if isinstance(data, list):
        return data
    raise DatasetLoadError(f"{path}: expected a JSON list of records or JSON lines")


def _read_parquet(files: list[Path], label: str) -> list[Any]:
    """Read parquet shards through `datasets` (kept lazy: it is slow to import)."""
    try:
        import datasets

        ds = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
        return list(ds.to_list())
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetLoadError(f"cannot read parquet data at {label}: {reason}") from None


def _load_hub(split: str) -> list[Any]:
    """Load the split from the Hugging Face Hub (or its local cache)."""
    try:
        import datasets

        ds = datasets.load_dataset(HF_DATASET, HF_CONFIG, split=split)
        return list(ds.to_list())
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetLoadError(
            f"could not load {HF_DATASET} ({HF_CONFIG}, split {split!r}) from the Hugging Face Hub "
            f"({reason}); if the hub cannot be reached, pass data_path pointing at a folder with "
            f"{split}.jsonl or parquet files"
        ) from None


def _load_path(data_path: Path, split: str) -> tuple[list[Any], Path]:
    """Load records from a local file or folder; returns (records, file or folder read)."""
    if not data_path.exists():
        raise DatasetLoadError(f"data_path {data_path} does not exist")
    if data_path.is_file():
        return _read_file(data_path), data_path
    for name in (f"{split}.jsonl", f"{split}.json"):
        candidate = data_path / name
        if candidate.is_file():
            return _read_file(candidate), candidate
    for pattern in _PARQUET_PATTERNS:
        files = sorted(data_path.glob(pattern.format(split=split)))
        if files:
            return _read_parquet(files, f"{data_path}/{pattern.format(split=split)}"), data_path
    raise DatasetLoadError(
        f"no {split!r} split in {data_path}: expected {split}.jsonl, {split}.json or "
        f"parquet files such as {split}-*.parquet or main/{split}-*.parquet"
    )


def _read_file(path: Path) -> list[Any]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".parquet":
        return _read_parquet([path], str(path))
    raise DatasetLoadError(f"{path}: unsupported file type {suffix or '(none)'}; use .jsonl, .json or .parquet")


def _check_arg(key: str, value: Any, types: tuple[type, ...], allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, types) or isinstance(value, bool):
        expected = " or ".join(t.__name__ for t in types) + (" or null" if allow_none else "")
        raise EnvArgsError("gsm8k", key, f"expected {expected}, got {type(value).__name__} {value!r}")


class GSM8K(Environment):
    """GSM8K test/train split; example_id = line number (0-based) in the source order.

    Reward is the boxed-answer correctness from `MathRubric`; metrics add lm-eval's
    strict-match and flexible-extract scores and whether a boxed answer was present.
    """

    env_id = "gsm8k"

    def __init__(
        self,
        split: str = "test",
        data_path: str | os.PathLike[str] | None = None,
        system_prompt: str | None = None,
    ) -> None:
        _check_arg("split", split, (str,), allow_none=False)
        if not split.strip():
            raise EnvArgsError(self.env_id, "split", "must not be empty")
        if not isinstance(data_path, os.PathLike):
            _check_arg("data_path", data_path, (str,), allow_none=True)
        _check_arg("system_prompt", system_prompt, (str,), allow_none=True)

        self.split: str = split
        self.data_path: Path | None = Path(data_path).expanduser() if data_path is not None else None
        self.system_prompt: str = DEFAULT_SYSTEM_PROMPT if system_prompt is None else system_prompt
        self.rubric: MathRubric = MathRubric()

        if self.data_path is None:
            records, source = _load_hub(split), f"{HF_DATASET} split {split!r}"
        else:
            records, path = _load_path(self.data_path, split)
            source = str(path)
        if not records:
            raise DatasetLoadError(f"{source}: no rows found")
        super().__init__([self._to_row(i, rec, source) for i, rec in enumerate(records)])

    def _to_row(self, index: int, record: Any, source: str) -> Row:
        """Turn one raw record into a Row; malformed records fail loudly with their index."""
        if not isinstance(record, Mapping):
            raise DatasetLoadError(f"{source}: row {index} is not an object")
        question = record.get("question")
        solution = record.get("answer")
        if not isinstance(question, str) or not isinstance(solution, str):
            raise DatasetLoadError(f"{source}: row {index} lacks string fields 'question' and 'answer'")
        gold = gold_answer(solution)
        if gold is None:
            raise DatasetLoadError(f"{source}: row {index} answer has no final '#### N' line")
        prompt: list[dict[str, str]] = []
        if self.system_prompt:  # "" means: send no system message (models without one)
            prompt.append({"role": "system", "content": self.system_prompt})
        prompt.append({"role": "user", "content": question})
        return Row(example_id=index, prompt=prompt, answer=gold, info={"solution": solution})

    def score(self, completion: str, row: Row) -> tuple[float, dict[str, float]]:
        return self.rubric.score(completion, row.answer)
