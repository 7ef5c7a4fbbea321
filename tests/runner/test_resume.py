"""Resume keeps each successful rollout once, drops errored rows and a torn last line."""

from __future__ import annotations

import json

import pytest

from rayeval.runner.config import EvalConfig
from rayeval.runner.errors import ConfigError
from rayeval.runner.resume import check_matches, compact_results, find_latest_incomplete


def row(e: int, r: int, reward: float | None, error: dict | None = None) -> str:
    return json.dumps({"example_id": e, "rollout_idx": r, "reward": reward, "error": error}) + "\n"


def test_compaction_keeps_successes_once_and_drops_errors_and_torn_line(tmp_path):
    (tmp_path / "results.jsonl").write_text(
        row(0, 0, 1.0) + row(0, 1, None, {"kind": "model_timeout"}) + row(0, 0, 1.0)
        + row(1, 0, 0.0) + '{"example_id": 1, "rollout_'
    )
    kept = []
    state = compact_results(tmp_path, kept.append)
    assert state.done == {(0, 0), (1, 0)}
    assert (state.kept, state.dropped_errored, state.dropped_torn) == (2, 1, 1)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["example_id"] for line in lines] == [0, 1]
    assert len(kept) == 2


def test_resume_refuses_a_run_of_another_model(tmp_path):
    (tmp_path / "metadata.json").write_text(
        json.dumps({"env_id": "gsm8k", "model": "sim", "rollouts_per_example": 4})
    )
    check_matches(tmp_path, EvalConfig(env_id="gsm8k", model="sim", rollouts_per_example=4))
    with pytest.raises(ConfigError, match="model"):
        check_matches(tmp_path, EvalConfig(env_id="gsm8k", model="other", rollouts_per_example=4))
    with pytest.raises(ConfigError, match="rollouts_per_example"):
        check_matches(tmp_path, EvalConfig(env_id="gsm8k", model="sim", rollouts_per_example=8))


def test_latest_incomplete_run_is_found(tmp_path):
    parent = tmp_path / "gsm8k--sim"
    for name, complete in (("a", True), ("b", False)):
        (parent / name).mkdir(parents=True)
        (parent / name / "metadata.json").write_text(json.dumps({"complete": complete}))
    assert find_latest_incomplete(str(tmp_path), "gsm8k", "sim") == parent / "b"
    with pytest.raises(ConfigError, match="no incomplete run"):
        find_latest_incomplete(str(tmp_path), "gsm8k", "other")
