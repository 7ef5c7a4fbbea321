"""Ceiling bench: rayeval's rollouts/s against a plain openai loop on the same simulator.

    ../shared/bin/loopback-only .venv/bin/python bench/ceiling.py [--n 16 --r 1024]

Baseline: one process running `AsyncOpenAI(http_client=DefaultAioHttpClient())` with 64 calls
in flight, the same gsm8k prompts and the same count as rayeval. Candidate: the whole
`rayeval gsm8k -n N -r R -c -1` process against the same simulator. Both are timed from
outside as whole processes (start-up included), so the ratio is what a user sees.
Target: rayeval/loop >= 0.7.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import DATA, RAYEVAL, read_metadata, run_process

LOOP = r'''
import asyncio, json, sys, time
import openai
from rayeval.envs import load_environment

async def main(base_url, data, n, r, window):
    env = load_environment("gsm8k", {"data_path": data})
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0,
                                http_client=openai.DefaultAioHttpClient())
    jobs = [(e, i) for e in range(n) for i in range(r)]
    it = iter(jobs)
    ok = 0
    async def worker():
        nonlocal ok
        for e, i in it:
            row = env.row(e)
            resp = await client.chat.completions.create(
                model="loop", messages=row.prompt,
                extra_headers={"X-Rayeval-Rollout-Idx": str(i)})
            env.score(resp.choices[0].message.content or "", row)
            ok += 1
    await asyncio.gather(*(worker() for _ in range(window)))
    await client.close()
    print(json.dumps({"calls": ok}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--r", type=int, default=1024)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--num-servers", type=int, default=2)
    args = parser.parse_args()
    total = args.n * args.r

    from rayeval.runner.simulator import start_in_subprocess

    sim = start_in_subprocess("gsm8k", {"data_path": str(DATA)}, {})
    try:
        loop = run_process([sys.executable, "-c", LOOP, sim.base_url, str(DATA), str(args.n),
                            str(args.r), str(args.window)])
        assert loop.returncode == 0, loop.stderr[-2000:]
        assert json.loads(loop.stdout)["calls"] == total
        run_dir = Path(tempfile.mkdtemp(prefix="rayeval-ceiling-")) / "run"
        ours = run_process([RAYEVAL, "gsm8k", "-m", "bench", "-b", sim.base_url,
                            "-a", json.dumps({"data_path": str(DATA)}), "-n", str(args.n),
                            "-r", str(args.r), "-c", "-1", "-o", str(run_dir), "-d",
                            "--num-servers", str(args.num_servers)])
        assert ours.returncode == 0, ours.stderr[-2000:]
        meta = read_metadata(run_dir)
        assert meta["counts"]["succeeded"] == total and meta["counts"]["lost"] == 0
    finally:
        sim.stop()
    loop_rate = total / loop.wall_s
    ours_rate = total / ours.wall_s
    print(f"ceiling: {total} rollouts against one simulator, whole processes timed from outside")
    print(f"  plain openai loop ({args.window} in flight): {loop.wall_s:6.1f} s  {loop_rate:7.0f} calls/s")
    print(f"  rayeval -c -1 ({args.num_servers} env servers):     {ours.wall_s:6.1f} s  {ours_rate:7.0f} rollouts/s"
          f"  (start-up {meta['timing']['startup_s']:.1f} s, steady {meta['timing']['rollouts_per_s']:.0f}/s)")
    print(f"  ratio rayeval/loop: {ours_rate / loop_rate:.2f}  (target >= 0.70, stretch >= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
