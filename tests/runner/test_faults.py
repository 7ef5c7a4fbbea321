"""Every reply under faults: killed env servers, a faulty model endpoint, a killed or stalled
driver. Real Ray, real sockets, real HTTP; the default suite runs short versions, `-m chaos`
the long ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).with_name("rayeval"))


def start_run(run_dir: Path, gsm8k_dir: Path, ray_address: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [EXE, "gsm8k", "-m", "sim", "-a", json.dumps({"data_path": str(gsm8k_dir)}),
         "-o", str(run_dir), "--ray-address", ray_address, "-d", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def count_rows(run_dir: Path) -> int:
    try:
        with open(run_dir / "results.jsonl", "rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def wait_rows(run_dir: Path, at_least: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while count_rows(run_dir) < at_least:
        assert proc.poll() is None, f"run ended early: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "run made no progress"
        time.sleep(0.05)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"run hung past {timeout}s: {err[-2000:]}")
    assert proc.returncode == 0, err[-3000:]
    return out


def assert_exact_rows(run_dir: Path, n: int, r: int) -> dict:
    rows = [json.loads(line) for line in open(run_dir / "results.jsonl", encoding="utf-8")]
    keys = [(row["example_id"], row["rollout_idx"]) for row in rows]
    assert len(keys) == len(set(keys)), "duplicate rows in the output"
    assert set(keys) == {(e, i) for e in range(n) for i in range(r)}
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["counts"]["lost"] == 0
    assert meta["complete"] is True
    return meta


def server_pids(run_dir: Path) -> list[int]:
    meta = json.loads((run_dir / "metadata.json").read_text())  # written before the first request
    return [server["pid"] for server in meta["servers"]]


def kill_servers_twice(run_dir: Path, gsm8k_dir: Path, ray_address: str, n: int, r: int) -> dict:
    proc = start_run(run_dir, gsm8k_dir, ray_address, "-n", str(n), "-r", str(r), "-c", "16",
                     "--sim-args", '{"latency_ms": 150}')
    wait_rows(run_dir, n * r // 10, proc)
    first, second = server_pids(run_dir)
    os.kill(first, signal.SIGKILL)
    wait_rows(run_dir, n * r // 2, proc)
    os.kill(second, signal.SIGKILL)
    finish(proc)
    return assert_exact_rows(run_dir, n, r)


def test_env_server_sigkill_twice_loses_nothing(ray_address, gsm8k_dir, tmp_path):
    meta = kill_servers_twice(tmp_path / "run", gsm8k_dir, ray_address, 8, 48)
    assert meta["pool_events"]["declared_down"] >= 2
    assert meta["pool_events"]["restarts"] >= 2
    assert meta["counts"]["redelivered"] > 0
    assert meta["counts"]["succeeded"] == 8 * 48


@pytest.mark.chaos
def test_env_server_sigkill_twice_long(ray_address, gsm8k_dir, tmp_path):
    meta = kill_servers_twice(tmp_path / "run", gsm8k_dir, ray_address, 16, 128)
    assert meta["pool_events"]["restarts"] >= 2


def run_fault_mix(run_dir: Path, gsm8k_dir: Path, ray_address: str, n: int, r: int) -> dict:
    sim_args = {"fail_rate": 0.1, "rate_limit_rate": 0.05, "hang_rate": 0.01, "retry_after_s": 0.2}
    proc = start_run(run_dir, gsm8k_dir, ray_address, "-n", str(n), "-r", str(r), "-c", "-1",
                     "--sim-args", json.dumps(sim_args), "--request-timeout", "2",
                     "--max-retries", "3")
    finish(proc)
    return assert_exact_rows(run_dir, n, r)


def test_model_500_429_and_hangs_end_as_results_or_error_rows(ray_address, gsm8k_dir, tmp_path):
    meta = run_fault_mix(tmp_path / "run", gsm8k_dir, ray_address, 8, 32)
    counts = meta["counts"]
    assert counts["retried"] > 0
    assert counts["succeeded"] + counts["errored"] == 8 * 32
    assert counts["succeeded"] > 0.9 * 8 * 32  # four attempts beat a 16% fault rate


@pytest.mark.chaos
def test_fault_mix_long(ray_address, gsm8k_dir, tmp_path):
    run_fault_mix(tmp_path / "run", gsm8k_dir, ray_address, 16, 128)


def test_errored_rows_carry_kind_message_attempts(ray_address, gsm8k_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_run(run_dir, gsm8k_dir, ray_address, "-n", "2", "-r", "4",
                     "--sim-args", '{"fail_rate": 1.0}', "--max-retries", "1")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "every rollout failed" in err  # nothing succeeded: say so
    rows = [json.loads(line) for line in open(run_dir / "results.jsonl")]
    assert len(rows) == 8
    for row in rows:
        assert row["reward"] is None
        assert row["error"]["kind"] == "model_server_error"
        assert row["error"]["attempts"] == 2 and row["error"]["message"]


def kill_driver_then_resume(run_dir: Path, gsm8k_dir: Path, ray_address: str, n: int, r: int):
    args = ["-n", str(n), "-r", str(r), "-c", "16", "--sim-args", '{"latency_ms": 100}']
    proc = start_run(run_dir, gsm8k_dir, ray_address, *args)
    wait_rows(run_dir, n * r // 4, proc)
    proc.kill()
    proc.wait()
    with open(run_dir / "results.jsonl", "a") as fh:
        fh.write('{"example_id": 0, "rollout_')  # a torn last line, as a crash mid-write leaves
    assert json.loads((run_dir / "metadata.json").read_text())["complete"] is False
    resumed = start_run(run_dir, gsm8k_dir, ray_address, *args, "-R", str(run_dir))
    finish(resumed)
    meta = assert_exact_rows(run_dir, n, r)
    assert meta["resumed"]["kept"] >= n * r // 4
    assert meta["resumed"]["torn_lines_dropped"] == 1
    assert meta["counts"]["sent"] == n * r - meta["resumed"]["kept"]


def test_driver_sigkill_then_resume_completes_exactly(ray_address, gsm8k_dir, tmp_path):
    kill_driver_then_resume(tmp_path / "run", gsm8k_dir, ray_address, 8, 32)


@pytest.mark.chaos
def test_driver_sigkill_then_resume_long(ray_address, gsm8k_dir, tmp_path):
    kill_driver_then_resume(tmp_path / "run", gsm8k_dir, ray_address, 16, 128)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stall_driver(run_dir: Path, gsm8k_dir: Path, ray_address: str, stall_s: float) -> float:
    """SIGSTOP the driver while 64 KB replies are in flight; returns its peak RSS in MB."""
    proc = start_run(run_dir, gsm8k_dir, ray_address, "-n", "8", "-r", "64", "-c", "-1",
                     "--sim-args", '{"completion_bytes": 65536, "latency_ms": 300}')
    wait_rows(run_dir, 1, proc)
    peak = rss_mb(proc.pid)
    os.kill(proc.pid, signal.SIGSTOP)
    time.sleep(stall_s)
    os.kill(proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            peak = max(peak, rss_mb(proc.pid))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.05)
    finish(proc)
    assert_exact_rows(run_dir, 8, 64)
    return peak


def test_stalled_driver_loses_nothing_and_stays_bounded(ray_address, gsm8k_dir, tmp_path):
    peak = stall_driver(tmp_path / "run", gsm8k_dir, ray_address, stall_s=3)
    assert peak < 1024, f"driver peaked at {peak:.0f} MB"


@pytest.mark.chaos
def test_stalled_driver_10s(ray_address, gsm8k_dir, tmp_path):
    peak = stall_driver(tmp_path / "run", gsm8k_dir, ray_address, stall_s=10)
    assert peak < 1024, f"driver peaked at {peak:.0f} MB"


def test_hung_env_server_is_restarted_and_its_work_moved(ray_address, gsm8k_dir, tmp_path):
    """A SIGSTOPped server: its process lives, so only the hang timeout can tell; it must not
    hold the run hostage, and nothing it had in flight may be lost."""
    run_dir = tmp_path / "run"
    n, r = 8, 48
    proc = start_run(run_dir, gsm8k_dir, ray_address, "-n", str(n), "-r", str(r), "-c", "16",
                     "--sim-args", '{"latency_ms": 200}', "--server-hang-timeout", "3")
    wait_rows(run_dir, n * r // 8, proc)
    stopped = server_pids(run_dir)[0]
    os.kill(stopped, signal.SIGSTOP)
    try:
        finish(proc)
    finally:
        try:
            os.kill(stopped, signal.SIGCONT)  # Ray killed it; harmless if already gone
        except ProcessLookupError:
            pass
    meta = assert_exact_rows(run_dir, n, r)
    assert meta["pool_events"]["declared_down"] >= 1
    assert meta["counts"]["redelivered"] > 0
    # Its replacement may still be starting when the other server has finished the work.
    assert meta["pool_events"]["restarts"] >= 1 or meta["servers"][0]["state"] == "restarting"
