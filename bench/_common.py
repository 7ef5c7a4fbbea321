"""Shared pieces of the benches: paths, timing a whole process from outside, peak RSS."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data" / "gsm8k").resolve()
RAYEVAL = str(Path(sys.executable).with_name("rayeval"))


@dataclass
class ProcessRun:
    wall_s: float
    returncode: int
    peak_rss_mb: float
    ended_at: float
    stdout: str
    stderr: str


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_process(cmd: list[str], timeout: float = 1800) -> ProcessRun:
    """Run `cmd` to completion; wall time from outside and the process's own peak RSS."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    # Read stdout/stderr in the background so a chatty child never blocks on a full pipe.
    import threading

    out: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda: out.__setitem__("stdout", proc.stdout.read())),
        threading.Thread(target=lambda: out.__setitem__("stderr", proc.stderr.read())),
    ]
    for reader in readers:
        reader.start()
    while proc.poll() is None:
        hwm = _vm_hwm_mb(proc.pid)
        if hwm is not None:
            peak = max(peak, hwm)
        if time.monotonic() - started > timeout:
            proc.kill()
        time.sleep(0.02)
    ended_at = time.time()
    wall = time.monotonic() - started
    for reader in readers:
        reader.join()
    return ProcessRun(wall, proc.returncode, peak, ended_at, out.get("stdout", ""), out.get("stderr", ""))


def read_metadata(run_dir: Path) -> dict:
    return json.loads((run_dir / "metadata.json").read_text())
