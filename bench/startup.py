"""Start-up bench: the seed's case as a whole process, split into its phases.

    ../shared/bin/loopback-only .venv/bin/python bench/startup.py [--repeat 3]

Runs `rayeval gsm8k -m sim -n 16 -r 128 -c -1` (a local Ray started by the run) and reports
wall time, time to the first result, and the time spent after the last result (shutdown).
Targets here: whole process <= 10 s, first result <= 6 s, shutdown <= 1 s. Baseline in the same
run: `python -c "import ray; ray.init(); ray.shutdown()"`, Ray's own floor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from _common import DATA, RAYEVAL, read_metadata, run_process

RAY_FLOOR = "import ray; ray.init(include_dashboard=False); ray.shutdown()"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    walls, firsts, tails, floors = [], [], [], []
    for i in range(args.repeat):
        floor = run_process([sys.executable, "-c", RAY_FLOOR])
        floors.append(floor.wall_s)
        run_dir = Path(tempfile.mkdtemp(prefix="rayeval-startup-")) / "run"
        run = run_process([RAYEVAL, "gsm8k", "-m", "sim", "-a", json.dumps({"data_path": str(DATA)}),
                           "-n", "16", "-r", "128", "-c", "-1", "-o", str(run_dir), "-d"])
        assert run.returncode == 0, run.stderr[-2000:]
        timing = read_metadata(run_dir)["timing"]
        walls.append(run.wall_s)
        firsts.append(timing["first_result_s"])
        tails.append(run.ended_at - timing["last_result"])
        print(f"  run {i + 1}: wall {run.wall_s:5.2f} s  first result {timing['first_result_s']:5.2f} s"
              f"  (serving at {timing['startup_s']:.2f} s)  after last result {tails[-1]:5.2f} s"
              f"  | ray.init+shutdown alone {floor.wall_s:5.2f} s")
    med = statistics.median
    print(f"startup (median of {args.repeat}): wall {med(walls):.2f} s (target <= 10), first result "
          f"{med(firsts):.2f} s (target <= 6), after last result {med(tails):.2f} s (target <= 1); "
          f"Ray's own init+shutdown {med(floors):.2f} s, ratio wall/ray-floor {med(walls) / med(floors):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
