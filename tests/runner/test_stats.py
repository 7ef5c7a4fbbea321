"""rayeval.runner.stats: pass@k against brute force, RunningStats against hand computations."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from rayeval.runner.stats import RunningStats, pass_at_k


def brute_force_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """Fraction of size-k subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    hits = sum(1 for subset in subsets if any(i < c for i in subset))
    return Fraction(hits, len(subsets))


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration_of_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(float(brute_force_pass_at_k(n, c, k)), abs=1e-12)


def test_pass_at_1_is_fraction_correct():
    for n in (1, 2, 7, 128, 1000):
        for c in range(0, n + 1, max(1, n // 9)):
            assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-12)


def test_pass_at_k_is_one_when_too_few_wrong_to_fill_k():
    assert pass_at_k(10, 8, 3) == 1.0
    assert pass_at_k(5, 5, 1) == 1.0


def test_pass_at_k_large_n_stays_finite_and_in_range():
    value = pass_at_k(100_000, 3, 64)
    expected = 1 - math.comb(100_000 - 3, 64) / math.comb(100_000, 64)
    assert value == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n, c, k", [(4, 2, 5), (1, 0, 2), (3, 1, 0), (0, 0, 1), (3, 4, 1), (3, -1, 1)])
def test_pass_at_k_rejects_out_of_range_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_running_stats_summary_with_errored_rollouts_matches_hand_computation():
    stats = RunningStats()
    # example 0: 4 rollouts, 3 correct
    for reward in (1.0, 1.0, 0.0, 1.0):
        stats.add(0, reward, reward == 1.0)
    # example 1: 2 succeeded (both wrong), 2 errored
    stats.add(1, 0.0, False)
    stats.add(1, None, None)
    stats.add(1, 0.0, False)
    stats.add(1, None, None)
    # example 2: 3 succeeded (1 correct), 1 errored; correct derived from reward
    stats.add(2, 1.0)
    stats.add(2, 0.0)
    stats.add(2, None, None)
    stats.add(2, 0.0)
    # example 3: every rollout errored
    for _ in range(4):
        stats.add(3, None, None)

    s = stats.summary(rollouts_per_example=4)

    assert s["succeeded"] == 9
    assert s["errored"] == 7
    assert s["num_examples"] == 4
    assert s["num_examples_scored"] == 3
    rewards = [1, 1, 0, 1, 0, 0, 1, 0, 0]
    assert s["avg_reward"] == pytest.approx(4 / 9)
    assert s["reward_std"] == pytest.approx(float(np.std(rewards)))

    # clustered stderr by hand: example means 3/4, 0, 1/3
    means = [0.75, 0.0, 1 / 3]
    grand = sum(means) / 3
    sample_var = sum((m - grand) ** 2 for m in means) / (3 - 1)
    assert s["reward_stderr"] == pytest.approx(math.sqrt(sample_var) / math.sqrt(3))

    # pass@1: mean of c/n over the three scored examples
    assert s["pass_at_k"]["1"] == pytest.approx((3 / 4 + 0 / 2 + 1 / 3) / 3)
    # pass@2: all three have n >= 2
    p2 = (pass_at_k(4, 3, 2) + pass_at_k(2, 0, 2) + pass_at_k(3, 1, 2)) / 3
    assert s["pass_at_k"]["2"] == pytest.approx(p2)
    assert pass_at_k(3, 1, 2) == pytest.approx(2 / 3)
    # pass@4: only example 0 has 4 succeeded rollouts
    assert s["pass_at_k"]["4"] == pytest.approx(1.0)
    assert s["pass_at_k_examples"] == {"1": 3, "2": 3, "4": 1}
    assert set(s["pass_at_k"]) == {"1", "2", "4"}


def test_pass_at_k_keys_are_powers_of_two_up_to_r():
    stats = RunningStats()
    for i in range(10):
        stats.add(0, 1.0 if i % 2 else 0.0)
    assert list(stats.summary(10)["pass_at_k"]) == ["1", "2", "4", "8"]
    assert list(stats.summary(1)["pass_at_k"]) == ["1"]


def test_stderr_is_clustered_not_per_rollout():
    # Two examples, each answered identically by all 64 rollouts: the per-rollout naive stderr
    # would be tiny, the honest one reflects that there are only two independent questions.
    stats = RunningStats()
    for _ in range(64):
        stats.add(0, 1.0, True)
        stats.add(1, 0.0, False)
    s = stats.summary(64)
    assert s["avg_reward"] == 0.5
    assert s["reward_std"] == pytest.approx(0.5)
    assert s["reward_stderr"] == pytest.approx(math.sqrt(0.5) / math.sqrt(2))
    assert s["reward_stderr"] > s["reward_std"] / math.sqrt(128) * 5


def test_empty_and_single_example_summaries_use_none_for_undefined_values():
    empty = RunningStats().summary(4)
    assert empty["avg_reward"] is None and empty["reward_stderr"] is None
    assert empty["pass_at_k"] == {"1": None, "2": None, "4": None}
    assert empty["succeeded"] == empty["errored"] == 0

    one = RunningStats()
    one.add(7, 1.0, True)
    s = one.summary(1)
    assert s["avg_reward"] == 1.0 and s["reward_stderr"] is None
    assert s["pass_at_k"] == {"1": 1.0}


def test_merge_equals_feeding_one_instance():
    feed = [(i % 5, float(i % 3 == 0), i % 3 == 0) for i in range(40)] + [(2, None, None)]
    whole, left, right = RunningStats(), RunningStats(), RunningStats()
    for i, (eid, reward, correct) in enumerate(feed):
        whole.add(eid, reward, correct)
        (left if i % 2 else right).add(eid, reward, correct)
    left.merge(right)
    assert left.summary(8) == whole.summary(8)


def test_nan_reward_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        RunningStats().add(0, float("nan"), False)
