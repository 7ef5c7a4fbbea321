"""GSM8K loads local jsonl/parquet data in file order and reports bad input in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rayeval.envs import GSM8K, DatasetLoadError, EnvArgsError, load_environment

DATA = (Path(__file__).resolve().parents[2] / "../shared/data/gsm8k").resolve()


def _first_records(n: int) -> list[dict[str, str]]:
    with (DATA / "test.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(next(handle)) for _ in range(n)]


def test_folder_defaults_to_test_split_in_file_order() -> None:
    env = GSM8K(data_path=str(DATA))
    assert len(env) == 1319
    assert [r.example_id for r in env.rows] == list(range(1319))
    first = env.row(0)
    assert first.answer == "18"
    assert first.prompt[0]["role"] == "system" and "\\boxed{}" in first.prompt[0]["content"]
    assert first.prompt[1] == {"role": "user", "content": _first_records(1)[0]["question"]}
    assert first.info["solution"].endswith("#### 18")
    assert env.row(1318).answer == _first_records(1319)[-1]["answer"].split("####")[-1].strip().replace(",", "")


def test_train_split_and_single_file_path() -> None:
    assert len(GSM8K(split="train", data_path=str(DATA))) == 7473
    single = GSM8K(data_path=str(DATA / "test.jsonl"))
    assert len(single) == 1319 and single.row(0).answer == "18"


def test_gold_answers_drop_thousands_commas(tmp_path: Path) -> None:
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "work\n#### 1,234"}) + "\n\n", encoding="utf-8")
    assert GSM8K(data_path=str(tmp_path)).row(0).answer == "1234"


def test_custom_and_empty_system_prompt() -> None:
    assert GSM8K(data_path=str(DATA), system_prompt="Be brief.").row(0).prompt[0]["content"] == "Be brief."
    assert [m["role"] for m in GSM8K(data_path=str(DATA), system_prompt="").row(0).prompt] == ["user"]


def test_row_out_of_range_names_the_valid_range() -> None:
    env = GSM8K(data_path=str(DATA))
    with pytest.raises(IndexError, match=r"1319 out of range.*0\.\.1318"):
        env.row(1319)
    with pytest.raises(IndexError):
        env.row(-1)


def test_parquet_file_and_hf_style_folder_load(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = _first_records(5)
    single = tmp_path / "gsm8k.parquet"
    pq.write_table(pa.Table.from_pylist(records), single)
    env = GSM8K(data_path=str(single))
    assert len(env) == 5 and env.row(0).answer == "18"
    assert env.row(4).prompt[-1]["content"] == records[4]["question"]

    shards = tmp_path / "snapshot" / "main"
    shards.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(records[:3]), shards / "test-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(records[3:]), shards / "test-00001-of-00002.parquet")
    folder_env = GSM8K(data_path=str(tmp_path / "snapshot"))
    assert [r.prompt[-1]["content"] for r in folder_env.rows] == [r["question"] for r in records]


def test_missing_path_raises_dataset_load_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetLoadError, match=str(missing)):
        GSM8K(data_path=str(missing))


def test_missing_split_in_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DatasetLoadError, match=r"no 'validation' split"):
        GSM8K(split="validation", data_path=str(DATA))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"question": "q"}\n', r"row 0 lacks string fields"),
        ('{"question": "q", "answer": "no marker"}\n', r"row 0 answer has no final"),
        ('{"question": "q", "answer": "#### 1"}\nnot json\n', r"line 2 is not valid JSON"),
        ('[1, 2]\n', r"row 0 is not an object"),
    ],
)
def test_malformed_rows_raise_dataset_load_error(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetLoadError, match=expected) as info:
        GSM8K(data_path=str(path))
    assert str(path) in str(info.value)


def test_unknown_or_mistyped_env_args_raise_env_args_error() -> None:
    with pytest.raises(EnvArgsError, match=r"'splt'.*unknown argument.*split"):
        load_environment("gsm8k", {"splt": "test", "data_path": str(DATA)})
    with pytest.raises(EnvArgsError, match=r"'split'.*expected str"):
        load_environment("gsm8k", {"split": 3, "data_path": str(DATA)})
    with pytest.raises(EnvArgsError, match=r"'data_path'"):
        load_environment("gsm8k", {"data_path": ["a"]})


def test_hub_failure_suggests_data_path() -> None:
    """With the Hub unreachable (forced offline) the error is one line and points at data_path."""
    code = (
        "from rayeval.envs import GSM8K, DatasetLoadError\n"
        "try:\n    print('LOADED', len(GSM8K()))\n"
        "except DatasetLoadError as exc:\n    print('ERROR', exc)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    if line.startswith("LOADED"):  # the dataset happens to be in the local HF cache
        assert line == "LOADED 1319"
    else:
        assert line.startswith("ERROR could not load openai/gsm8k") and "data_path" in line
        assert "\n" not in line
