"""Scale bench: a 100k-rollout run in bounded driver memory, against a 2,048-rollout run.

    ../shared/bin/loopback-only .venv/bin/python bench/scale.py [--n 1319 --r 76]

Both runs use the simulator (`-m sim`) and `-c -1`. Reports the driver's peak RSS (VmHWM of
the rayeval process, polled from /proc) and steady rollouts/s of each; targets: peak under
600 MB, and the big run's rollouts/s within 20% of the small one's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import DATA, RAYEVAL, read_metadata, run_process


def one(n: int, r: int, concurrency: str) -> tuple[dict, float, float]:
    run_dir = Path(tempfile.mkdtemp(prefix="rayeval-scale-")) / "run"
    run = run_process([RAYEVAL, "gsm8k", "-m", "sim", "-a", json.dumps({"data_path": str(DATA)}),
                       "-n", str(n), "-r", str(r), "-c", concurrency, "-o", str(run_dir), "-d"])
    assert run.returncode == 0, run.stderr[-2000:]
    meta = read_metadata(run_dir)
    assert meta["counts"]["lost"] == 0 and meta["counts"]["succeeded"] == n * r
    rows = sum(1 for _ in open(run_dir / "results.jsonl", "rb"))
    assert rows == n * r
    return meta, run.peak_rss_mb, run.wall_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1319)
    parser.add_argument("--r", type=int, default=76)
    parser.add_argument("-c", default="-1")
    args = parser.parse_args()
    small, small_rss, small_wall = one(16, 128, args.c)
    big, big_rss, big_wall = one(args.n, args.r, args.c)
    s_rate, b_rate = small["timing"]["rollouts_per_s"], big["timing"]["rollouts_per_s"]
    print(f"scale: -c {args.c}")
    print(f"  2,048 rollouts:   wall {small_wall:7.1f} s  steady {s_rate:6.0f} rollouts/s  driver peak RSS {small_rss:6.0f} MB")
    print(f"  {args.n * args.r:,} rollouts: wall {big_wall:7.1f} s  steady {b_rate:6.0f} rollouts/s  driver peak RSS {big_rss:6.0f} MB")
    print(f"  ratio big/small rollouts/s: {b_rate / s_rate:.2f} (target >= 0.80); peak RSS target < 600 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
