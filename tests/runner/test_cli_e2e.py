"""End to end through the `rayeval` command: real Ray actors, real ZeroMQ, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

N, R = 16, 128


def read_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "results.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def assert_complete_run(run_dir: Path, n: int, r: int) -> dict:
    rows = read_rows(run_dir)
    assert len(rows) == n * r
    keys = {(row["example_id"], row["rollout_idx"]) for row in rows}
    assert keys == {(e, i) for e in range(n) for i in range(r)}
    for row in rows[:5]:
        for field in ("example_id", "rollout_idx", "completion", "answer", "reward", "metrics",
                      "error", "timing", "usage"):
            assert field in row
    meta = json.loads((run_dir / "metadata.json").read_text())
    counts = meta["counts"]
    assert (counts["sent"], counts["succeeded"], counts["errored"], counts["lost"]) == (n * r, n * r, 0, 0)
    assert counts["duplicates_dropped"] == 0
    assert meta["complete"] is True
    assert 0.6 <= meta["avg_reward"] <= 0.8
    assert set(meta["pass_at_k"]) == {str(2**i) for i in range(8) if 2**i <= r}
    for key in ("env_id", "model", "num_examples", "rollouts_per_example", "sampling_args", "timing"):
        assert key in meta
    return meta


def test_sim_run_returns_every_rollout(run_cli, ray_address, gsm8k_dir, tmp_path):
    run_dir = tmp_path / "run1"
    proc = run_cli(
        "gsm8k", "-m", "sim", "-a", json.dumps({"data_path": str(gsm8k_dir)}),
        "-n", str(N), "-r", str(R), "-c", "-1", "-o", str(run_dir), "--ray-address", ray_address,
    )
    assert proc.returncode == 0, proc.stderr
    meta = assert_complete_run(run_dir, N, R)
    assert meta["sim_requests"] == N * R
    assert "lost 0" in proc.stdout


@pytest.fixture
def sim_server(gsm8k_dir, tmp_path):
    """`rayeval sim-server` as its own process, as a user would start it; stopped by pid."""
    ready = tmp_path / "sim.ready"
    exe = Path(sys.executable).with_name("rayeval")
    proc = subprocess.Popen(
        [str(exe), "sim-server", "--port", "0", "-a", json.dumps({"data_path": str(gsm8k_dir)}),
         "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"sim-server did not start: {proc.stderr.read()}")
        time.sleep(0.1)
    yield ready.read_text().strip()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_external_endpoint_run_serves_exactly_n_times_r(
    run_cli, ray_address, sim_server, gsm8k_dir, tmp_path
):
    run_dir = tmp_path / "run2"
    proc = run_cli(
        "gsm8k", "-m", "any-name", "-b", sim_server, "-k", "SIM_KEY",
        "-a", json.dumps({"data_path": str(gsm8k_dir)}),
        "-n", str(N), "-r", str(R), "-c", "-1", "-o", str(run_dir), "--ray-address", ray_address,
        env={"SIM_KEY": "not-a-secret"},
    )
    assert proc.returncode == 0, proc.stderr
    assert_complete_run(run_dir, N, R)
    with urllib.request.urlopen(sim_server.rsplit("/v1", 1)[0] + "/stats", timeout=10) as resp:
        assert json.loads(resp.read())["requests"] == N * R
    meta_text = (run_dir / "metadata.json").read_text()
    assert "not-a-secret" not in meta_text and "SIM_KEY" in meta_text


@pytest.mark.parametrize(
    "args, needle",
    [
        (["-a", '{"data_path": "/nonexistent/gsm8k"}', "-m", "sim"], "/nonexistent/gsm8k"),
        (["-a", '{"data_path": ', "-m", "sim"], "JSON"),
        (["-n", "0", "-m", "sim"], "--num-examples"),
        (["-b", "http://127.0.0.1:9/v1", "-m", "x"], "127.0.0.1:9"),
    ],
    ids=["missing-data-path", "malformed-json", "zero-examples", "unreachable-endpoint"],
)
def test_bad_input_gives_one_clear_line(run_cli, gsm8k_dir, tmp_path, args, needle):
    if "-a" not in args:
        args = [*args, "-a", json.dumps({"data_path": str(gsm8k_dir)})]
    proc = run_cli("gsm8k", *args, "-o", str(tmp_path / "run"), timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("rayeval")]
    assert len(error_lines) == 1, proc.stderr
    assert needle in error_lines[0]


def test_results_stream_to_disk_before_the_run_ends(run_cli, ray_address, gsm8k_dir, tmp_path):
    """Rows appear in results.jsonl while the run is still going, not all at the end."""
    run_dir = tmp_path / "stream"
    exe = Path(sys.executable).with_name("rayeval")
    proc = subprocess.Popen(
        [str(exe), "gsm8k", "-m", "sim", "-a", json.dumps({"data_path": str(gsm8k_dir)}),
         "--sim-args", '{"latency_ms": 50}', "-n", "8", "-r", "64", "-c", "16",
         "-o", str(run_dir), "--ray-address", ray_address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    seen_partial = False
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        path = run_dir / "results.jsonl"
        if path.exists() and 0 < sum(1 for _ in open(path)) < 512:
            seen_partial = True
        time.sleep(0.2)
    proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    assert seen_partial
    assert len(read_rows(run_dir)) == 512
