"""Rows are streamed to disk as written, and the ledger derives `lost`."""

from __future__ import annotations

import json

from rayeval.runner.results import Counts, ResultRow, ResultWriter, default_run_dir


def make_row(i: int) -> ResultRow:
    return ResultRow(example_id=i, rollout_idx=0, answer="1", completion="\\boxed{1}", reward=1.0,
                     metrics={"strict": 0.0}, error=None, timing={}, usage=None)


def test_rows_reach_disk_before_close(tmp_path):
    writer = ResultWriter(tmp_path, flush_every=2, flush_seconds=60)
    for i in range(4):
        writer.write(make_row(i))
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["example_id"] for line in lines] == [0, 1, 2, 3]
    writer.close()


def test_lost_is_what_the_ledger_cannot_account_for():
    counts = Counts(sent=10, succeeded=7, errored=2)
    ledger = counts.as_dict()
    assert (ledger["sent"], ledger["succeeded"], ledger["errored"], ledger["lost"]) == (10, 7, 2, 1)


def test_default_run_dir_follows_vf_eval_layout(tmp_path):
    path = default_run_dir(str(tmp_path), "gsm8k", "Qwen/Qwen3-4B")
    assert path.parent == tmp_path / "gsm8k--Qwen--Qwen3-4B"
