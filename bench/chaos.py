"""Chaos bench: a faulty model endpoint and two env-server kills in one run; prints the ledger.

    ../shared/bin/loopback-only .venv/bin/python bench/chaos.py [--n 16 --r 64]

The simulator answers 10% of calls with 500, 5% with 429 (Retry-After), and leaves 1% hanging;
while the run goes, one env-server process is SIGKILLed at 25% of the rows and the other at
60%. The run must end with exactly n x r unique rows, lost 0 and no duplicates in the output.
Exit status 0 when every check holds, 1 otherwise. It starts its own local Ray through the CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data" / "gsm8k").resolve()


def count_rows(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--r", type=int, default=64)
    parser.add_argument("--data", default=str(DATA))
    args = parser.parse_args()
    total = args.n * args.r
    run_dir = Path(tempfile.mkdtemp(prefix="rayeval-chaos-")) / "run"
    sim_args = {"fail_rate": 0.10, "rate_limit_rate": 0.05, "hang_rate": 0.01,
                "retry_after_s": 0.5, "latency_ms": 100}
    cmd = [str(Path(sys.executable).with_name("rayeval")), "gsm8k", "-m", "sim",
           "-a", json.dumps({"data_path": args.data}), "--sim-args", json.dumps(sim_args),
           "-n", str(args.n), "-r", str(args.r), "-c", "64", "--request-timeout", "3",
           "--max-retries", "4", "-o", str(run_dir), "-d"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kills = []
    for fraction in (0.25, 0.60):
        while count_rows(run_dir / "results.jsonl") < fraction * total and proc.poll() is None:
            time.sleep(0.05)
        if proc.poll() is not None:
            break
        meta = json.loads((run_dir / "metadata.json").read_text())
        pid = meta["servers"][len(kills) % len(meta["servers"])]["pid"]
        os.kill(pid, signal.SIGKILL)
        kills.append((round(time.monotonic() - started, 1), pid))
    out, err = proc.communicate(timeout=900)
    wall = time.monotonic() - started

    rows = [json.loads(line) for line in open(run_dir / "results.jsonl", encoding="utf-8")]
    keys = [(r["example_id"], r["rollout_idx"]) for r in rows]
    meta = json.loads((run_dir / "metadata.json").read_text())
    counts = meta["counts"]
    errors: dict[str, int] = {}
    for row in rows:
        if row["error"]:
            errors[row["error"]["kind"]] = errors.get(row["error"]["kind"], 0) + 1
    checks = {
        "exit code 0": proc.returncode == 0,
        "two env servers killed": len(kills) == 2,
        f"exactly n x r = {total} rows": len(rows) == total,
        "every (example, rollout) once": set(keys) == {(e, i) for e in range(args.n) for i in range(args.r)},
        "duplicates in the output 0": len(keys) - len(set(keys)) == 0,
        "lost 0": counts["lost"] == 0,
        "sent = succeeded + errored": counts["sent"] == counts["succeeded"] + counts["errored"],
    }
    print(f"chaos: n={args.n} r={args.r} faults={sim_args} kills at (s, pid)={kills}")
    print("ledger:", json.dumps(counts))
    print("pool:  ", json.dumps(meta["pool_events"]))
    print("errored rows by kind:", json.dumps(errors))
    print(f"wall {wall:.1f}s, avg_reward {meta['avg_reward']:.4f} ± {meta['reward_stderr']:.4f}")
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    if proc.returncode != 0:
        print(err[-3000:], file=sys.stderr)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
