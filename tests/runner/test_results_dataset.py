"""results.jsonl loads with `datasets` as typed columns, errored rows included, in any order.

`datasets` infers types block by block; if errored rows ({} metrics, error records of another
shape) disagreed with successful ones, columns would degrade to untyped JSON or fail to load.
The files here are written through the real `ResultWriter`, large enough to span many blocks.
"""

from __future__ import annotations

import json

import pytest

datasets = pytest.importorskip("datasets")

from rayeval.runner.api import EvalResult  # noqa: E402
from rayeval.runner.results import ResultRow, ResultWriter  # noqa: E402

N = 6000  # rows per kind: far more than one Arrow JSON block


def ok_row(i: int) -> ResultRow:
    return ResultRow(
        example_id=i, rollout_idx=0, answer="18", completion="so \\boxed{18}" + " pad" * 40,
        reward=1.0 if i % 3 else 0.0,
        metrics={"strict": 0.0, "flexible": 1.0, "boxed": 1.0},
        error=None, timing={"total_ms": 12.5},
        usage={"prompt_tokens": 100, "completion_tokens": 20}, server=i % 2,
    )


def error_row(i: int) -> ResultRow:
    # Two real shapes: the driver's own records (no attempts, no timing) and the env server's.
    if i % 2:
        return ResultRow(example_id=i, rollout_idx=0, answer="18", completion=None, reward=None,
                         metrics={}, error={"kind": "request_timeout", "message": "no reply",
                                            "retryable": True},
                         timing={}, usage=None, server=0)
    return ResultRow(example_id=i, rollout_idx=0, answer="18", completion=None, reward=None,
                     metrics={}, error={"kind": "http_429", "message": "slow down",
                                        "retryable": True, "attempts": 4},
                     timing={"total_ms": 800.0}, usage=None, server=1)


def write_rows(run_dir, rows) -> None:
    writer = ResultWriter(run_dir)
    for row in rows:
        writer.write(row)
    writer.close()


@pytest.mark.parametrize("errors_first", [True, False])
def test_mixed_rows_load_with_struct_columns(tmp_path, errors_first):
    good = [ok_row(i) for i in range(N)]
    bad = [error_row(N + i) for i in range(N)]
    write_rows(tmp_path, bad + good if errors_first else good + bad)

    ds = datasets.load_dataset(
        "json", data_files=str(tmp_path / "results.jsonl"), split="train",
        cache_dir=str(tmp_path / "cache"),
    )
    assert len(ds) == 2 * N
    features = ds.features
    # structs, not opaque JSON: their fields are columns one can select and filter on
    assert set(features["metrics"]) == {"strict", "flexible", "boxed"}
    assert set(features["error"]) == {"kind", "message", "retryable", "attempts"}
    assert set(features["timing"]) == {"total_ms"}
    assert features["reward"].dtype == "float64"

    errored = ds.filter(lambda row: row["error"] is not None)
    assert len(errored) == N
    assert all(r is None for r in errored["reward"])
    assert all(m is None for m in errored["metrics"])
    assert sorted({e["attempts"] for e in errored["error"]}, key=str) == [4, None]
    succeeded = ds.filter(lambda row: row["error"] is None)
    assert sum(succeeded["reward"]) == sum(r.reward for r in good)
    flat = succeeded.flatten()
    assert "metrics.flexible" in flat.column_names


def test_eval_result_dataset_returns_every_row(tmp_path):
    write_rows(tmp_path, [ok_row(0), error_row(1), ok_row(2)])
    (tmp_path / "metadata.json").write_text(json.dumps({"counts": {}}))
    ds = EvalResult(run_dir=tmp_path, metadata={}).dataset()
    assert isinstance(ds, datasets.Dataset)
    assert ds["example_id"] == [0, 1, 2]
    assert ds["reward"][1] is None and ds["error"][1]["kind"] == "request_timeout"


def test_rows_on_disk_keep_one_shape(tmp_path):
    write_rows(tmp_path, [ok_row(0), error_row(1), error_row(2)])
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [sorted(row) for row in rows] == [sorted(rows[0])] * 3
    assert rows[1]["metrics"] is None and rows[1]["timing"] is None
    assert rows[1]["error"] == {"kind": "request_timeout", "message": "no reply",
                                "retryable": True, "attempts": None}
    assert rows[2]["error"]["attempts"] == 4 and rows[0]["metrics"]["boxed"] == 1.0
