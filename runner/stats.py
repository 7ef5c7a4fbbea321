"""Evaluation statistics: pass@k and incremental per-example accounting. Pure code, no I/O.

The driver feeds `RunningStats` one finished rollout at a time, so it never has to hold every
rollout of a run in memory: per example it keeps only a handful of numbers (rollouts that
succeeded, rollouts that errored, sum and sum of squares of rewards, number correct).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RunningStats", "pass_at_k"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from `n` samples of which `c` are correct.

    pass@k = 1 - C(n - c, k) / C(n, k): the probability that a random size-k subset of the n
    samples holds at least one correct one. The ratio of binomials is computed as the product
    prod_{i = n-c+1}^{n} (1 - k / i), which never forms the (huge) binomials themselves.
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"pass_at_k: {name} must be an int, got {type(value).__name__}")
    if n < 1:
        raise ValueError(f"pass_at_k: n must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k must be in [1, n={n}], got {k}")
    if n - c < k:  # every size-k subset contains a correct sample
        return 1.0
    ratio = 1.0
    for i in range(n - c + 1, n + 1):
        ratio *= 1.0 - k / i
    return 1.0 - ratio


@dataclass
class _ExampleTally:
    """What one example contributes; a few numbers however many rollouts it had."""

    succeeded: int = 0
    errored: int = 0
    correct: int = 0
    reward_sum: float = 0.0
    reward_sq_sum: float = 0.0


class RunningStats:
    """Per-example tallies, fed one rollout at a time, summarised at the end (or any time).

    `add(example_id, reward, correct)` records one rollout; `reward=None` means the rollout
    errored (no reply, or a reply that could not be scored), and it is counted but excluded
    from every reward and pass@k figure. For a succeeded rollout `correct=None` means "derive
    it from the reward": correct when `reward > 0`.
    """

    def __init__(self) -> None:
        self._tallies: dict[int, _ExampleTally] = {}

    def add(self, example_id: int, reward: float | None, correct: bool | None = None) -> None:
        tally = self._tallies.get(example_id)
        if tally is None:
            tally = self._tallies[example_id] = _ExampleTally()
        if reward is None:
            tally.errored += 1
            return
        reward = float(reward)
        if math.isnan(reward):
            raise ValueError(f"reward for example {example_id} is NaN; pass None for an errored rollout")
        tally.succeeded += 1
        tally.reward_sum += reward
        tally.reward_sq_sum += reward * reward
        if reward > 0 if correct is None else correct:
            tally.correct += 1

    def merge(self, other: RunningStats) -> None:
        """Add another instance's tallies to this one (e.g. partial results from several workers)."""
        for example_id, theirs in other._tallies.items():
            mine = self._tallies.get(example_id)
            if mine is None:
                mine = self._tallies[example_id] = _ExampleTally()
            mine.succeeded += theirs.succeeded
            mine.errored += theirs.errored
            mine.correct += theirs.correct
            mine.reward_sum += theirs.reward_sum
            mine.reward_sq_sum += theirs.reward_sq_sum

    def __len__(self) -> int:
        """Number of distinct examples seen (scored or not)."""
        return len(self._tallies)

    def summary(self, rollouts_per_example: int) -> dict[str, Any]:
        """Aggregate figures; values that are undefined for the data (no successes) are None.

        - `avg_reward`: mean reward over all succeeded rollouts.
        - `reward_std`: population standard deviation of those rewards (spread of single rollouts).
        - `reward_stderr`: standard error of the mean reward, clustered by example: the sample
          standard deviation (ddof=1) of the per-example mean rewards divided by the square root
          of the number of examples with at least one success. The r rollouts of one question are
          strongly correlated (an easy question is answered correctly almost every time), so the
          independent information is per question, not per rollout; the naive
          `reward_std / sqrt(#rollouts)` would understate the uncertainty by up to sqrt(r).
          It needs two scored examples (None otherwise).
        - `pass_at_k`: {"1": ..., "2": ..., "4": ...} for every power of two k <= r, the unbiased
          estimator averaged over examples. Each example uses its own n = number of succeeded
          rollouts and its own c; examples with n < k (too many errored rollouts) cannot give an
          unbiased pass@k and are skipped for that k. `pass_at_k_examples` gives how many
          examples each value averages, so a skip is visible rather than silent.
        - `num_examples`, `num_examples_scored` (>= 1 succeeded rollout), `succeeded`, `errored`.
        """
        if isinstance(rollouts_per_example, bool) or not isinstance(rollouts_per_example, int):
            raise TypeError("rollouts_per_example must be an int")
        if rollouts_per_example < 1:
            raise ValueError(f"rollouts_per_example must be >= 1, got {rollouts_per_example}")

        tallies = list(self._tallies.values())
        succeeded = np.array([t.succeeded for t in tallies], dtype=np.int64)
        errored = sum(t.errored for t in tallies)
        correct = np.array([t.correct for t in tallies], dtype=np.int64)
        sums = np.array([t.reward_sum for t in tallies], dtype=np.float64)
        sq_sums = np.array([t.reward_sq_sum for t in tallies], dtype=np.float64)

        scored = succeeded > 0
        num_scored = int(scored.sum())
        total = int(succeeded.sum())

        avg_reward = reward_std = reward_stderr = None
        if total > 0:
            mean = float(sums.sum() / total)
            variance = max(float(sq_sums.sum() / total) - mean * mean, 0.0)
            avg_reward, reward_std = mean, math.sqrt(variance)
        if num_scored >= 2:
            example_means = sums[scored] / succeeded[scored]
            reward_stderr = float(np.std(example_means, ddof=1) / math.sqrt(num_scored))

        pass_at = {}
        pass_at_examples = {}
        k = 1
        while k <= rollouts_per_example:
            eligible = [
                pass_at_k(int(n), int(c), k) for n, c in zip(succeeded, correct) if n >= k
            ]
            pass_at[str(k)] = float(np.mean(eligible)) if eligible else None
            pass_at_examples[str(k)] = len(eligible)
            k *= 2

        return {
            "avg_reward": avg_reward,
            "reward_std": reward_std,
            "reward_stderr": reward_stderr,
            "pass_at_k": pass_at,
            "pass_at_k_examples": pass_at_examples,
            "num_examples": len(tallies),
            "num_examples_scored": num_scored,
            "succeeded": total,
            "errored": errored,
            "rollouts_per_example": rollouts_per_example,
        }
