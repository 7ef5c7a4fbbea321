"""The end-of-run summary a person reads: reward with its error bar, pass@k, the ledger, speed."""

from __future__ import annotations

from typing import Any


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_summary(metadata: dict[str, Any]) -> str:
    counts = metadata["counts"]
    timing = metadata["timing"]
    lines = [
        f"env {metadata['env_id']}  model {metadata['model']}  "
        f"n={metadata['num_examples']} r={metadata['rollouts_per_example']}",
        f"reward  mean {_fmt(metadata['avg_reward'])} ± {_fmt(metadata['reward_stderr'])} "
        "(standard error, clustered by example)",
    ]
    if metadata["pass_at_k"]:
        lines.append(
            "pass@k  " + "  ".join(f"k={k}: {_fmt(v, 3)}" for k, v in metadata["pass_at_k"].items())
        )
    lines.append(
        "ledger  sent {sent}  succeeded {succeeded}  errored {errored}  lost {lost}  "
        "(retried {retried}, redelivered {redelivered}, duplicates dropped {duplicates_dropped}, "
        "late replies dropped {late_replies})"
        .format(**counts)
    )
    lines.append(
        f"time    {timing['wall_s']:.1f}s wall, {timing['startup_s']:.1f}s start-up, "
        f"first result at {timing['first_result_s']:.1f}s, {timing['rollouts_per_s']:.0f} rollouts/s"
    )
    lines.append(f"results {metadata['run_dir']}")
    return "\n".join(lines)
