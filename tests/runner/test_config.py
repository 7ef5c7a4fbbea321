"""EvalConfig refuses bad values with a message naming the option."""

from __future__ import annotations

import pytest

from rayeval.runner.config import EvalConfig, merge_sampling_args
from rayeval.runner.errors import ConfigError


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"num_examples": 0}, "--num-examples"),
        ({"num_examples": -2}, "--num-examples"),
        ({"rollouts_per_example": 0}, "--rollouts-per-example"),
        ({"max_concurrent": 0}, "--max-concurrent"),
        ({"num_servers": 0}, "--num-servers"),
        ({"api_key_var": "sk-abc123!"}, "--api-key-var"),
        ({"base_url": "localhost:8000"}, "--api-base-url"),
        ({"env_args": ["x"]}, "env_args"),
    ],
)
def test_bad_values_name_the_option(changes, needle):
    with pytest.raises(ConfigError, match=needle):
        EvalConfig(env_id="gsm8k", model="sim", **changes)


def test_unlimited_and_all_are_accepted():
    config = EvalConfig(env_id="gsm8k", model="sim", num_examples=-1, max_concurrent=-1)
    assert config.is_sim and config.num_examples == -1


def test_sampling_args_given_in_json_win_over_flags():
    merged = merge_sampling_args({"max_tokens": 10}, max_tokens=99, temperature=0.5)
    assert merged == {"max_tokens": 10, "temperature": 0.5}
