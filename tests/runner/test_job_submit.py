"""`ray job submit` of a rayeval run, the README's recipe: head with the dashboard, submit with
the checkout as working dir, results written to an absolute -o on the head node.

The job's driver is started by the head's job supervisor, with the PATH of the `ray start`
that started the head: the venv's bin/ is on it, so `rayeval` resolves there (checked below).
The cluster is started and stopped by pid (see _ray_nodes.py), never with `ray stop`.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

from _ray_nodes import RayNodes

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)  # the venv running the tests: it has ray and rayeval
# What the job must not upload (Ray caps a working_dir package, and none of it is needed).
EXCLUDES = [".git", ".venv*", "outputs", ".hypothesis", "**/__pycache__", "*.egg-info"]


def _ray(nodes: RayNodes, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV / "bin" / "ray"), *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env=nodes.env, timeout=timeout)


def test_submitted_job_runs_the_cli_and_writes_results_where_asked(
    gsm8k_dir: Path, tmp_path: Path
) -> None:
    n, r = 4, 4
    out = tmp_path / "job-run"
    job_id = f"rayeval-test-{secrets.token_hex(4)}"
    with RayNodes() as nodes:
        nodes.start_head(VENV, num_cpus=2, dashboard=True, cwd=str(PROJECT_ROOT))
        submit = ["job", "submit", "--address", nodes.dashboard_url, "--working-dir", ".",
                  "--runtime-env-json", json.dumps({"excludes": EXCLUDES})]
        # Which `rayeval` a job's shell finds: the head venv's, from the PATH of `ray start`.
        which = _ray(nodes, *submit, "--", "command", "-v", "rayeval")
        assert which.returncode == 0, (which.stdout + which.stderr)[-4000:]
        assert str(VENV / "bin" / "rayeval") in which.stdout + which.stderr

        # Ray quotes each argument after `--` for the job's shell: the JSON goes in as it is.
        job = _ray(
            nodes, *submit, "--submission-id", job_id,
            "--", "rayeval", "gsm8k", "-m", "sim", "-a", json.dumps({"data_path": str(gsm8k_dir)}),
            "-n", str(n), "-r", str(r), "-d", "-o", str(out),
        )
        logs = job.stdout + job.stderr
        assert job.returncode == 0, logs[-4000:]
        status = _ray(nodes, "job", "status", "--address", nodes.dashboard_url, job_id)
        assert "succeeded" in (status.stdout + status.stderr).lower(), logs[-4000:]

    # The job's own report names the folder it wrote, and the rows are there.
    assert f"results {out}" in logs, logs[-4000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {(row["example_id"], row["rollout_idx"]) for row in rows} == {
        (e, i) for e in range(n) for i in range(r)
    }
    assert len(rows) == n * r and all(row["error"] is None for row in rows)
    counts = json.loads((out / "metadata.json").read_text())["counts"]
    assert (counts["sent"], counts["succeeded"], counts["errored"], counts["lost"]) == (n * r, n * r, 0, 0)
