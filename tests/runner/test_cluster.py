"""rayeval on a real two-node Ray cluster started with `ray start`, as a user would run it.

The head runs from the project's .venv (which has rayeval); the second node runs from
.venv-worker, which has rayeval's dependencies but NOT rayeval, like a fresh cluster node.
Env servers are drawn to the second node by a custom resource, so a run that succeeds there
proves that the code was shipped (runtime_env py_modules) and that placement obeys the
resource. Both nodes share 127.0.0.1 on one machine, so placement is checked by node id.

The cluster is started and stopped by pid (see _ray_nodes.py), never with `ray stop`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from _ray_nodes import RayNodes, placements
from rayeval.runner import EvalConfig, cluster

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)  # the venv running the tests: it has ray and rayeval
WORKER_VENV = PROJECT_ROOT / ".venv-worker"
RUN_TIMEOUT = 300


@pytest.fixture(scope="module")
def worker_venv() -> Path:
    if not (WORKER_VENV / "bin" / "ray").exists():
        pytest.skip(
            f"no worker venv at {WORKER_VENV} (ray + rayeval's dependencies, without rayeval); "
            "create it as .ci/run does"
        )
    return WORKER_VENV


@pytest.fixture(scope="module")
def two_nodes(worker_venv: Path) -> Iterator[RayNodes]:
    with RayNodes() as nodes:
        # The dashboard serves the state API (ray.util.state) that reports each actor's node.
        nodes.start_head(VENV, num_cpus=1, dashboard=True)
        nodes.add_node(worker_venv, num_cpus=2, resources='{"envworker": 8}')
        yield nodes


def run_eval(nodes: RayNodes, cwd: Path, gsm8k_dir: Path, run_dir: Path, *, n: int, r: int,
             server_resources: dict[str, float], ship_code: bool | None = None,
             ) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(VENV / "bin" / "rayeval"), "gsm8k", "-m", "sim",
        "-a", json.dumps({"data_path": str(gsm8k_dir)}),
        "-n", str(n), "-r", str(r), "-c", "-1", "-d", "-o", str(run_dir),
        "--ray-address", nodes.address, "--num-servers", "2",
        "--server-resources", json.dumps(server_resources),
    ]
    if ship_code is not None:
        cmd.append("--ship-code" if ship_code else "--no-ship-code")
    # cwd outside the checkout: Ray puts the driver's cwd on workers' sys.path, and the
    # second node must get rayeval from the shipped package alone.
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=nodes.env,
                          timeout=RUN_TIMEOUT)


def _config(**fields: object) -> EvalConfig:
    return EvalConfig(env_id="gsm8k", model="sim", **fields)


def test_env_servers_are_spread_and_hold_the_requested_resources() -> None:
    assert cluster.actor_options(_config()) == {"scheduling_strategy": "SPREAD"}
    options = cluster.actor_options(_config(server_resources={"envworker": 1}))
    assert options == {"scheduling_strategy": "SPREAD", "resources": {"envworker": 1.0}}


def test_code_is_shipped_when_joining_a_cluster_unless_told_otherwise(monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not cluster.should_ship(_config())
    assert cluster.should_ship(_config(ray_address="10.0.0.1:6379"))
    assert not cluster.should_ship(_config(ray_address="10.0.0.1:6379", ship_code=False))
    assert cluster.should_ship(_config(ship_code=True))
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert cluster.should_ship(_config())


def test_node_requirements_pin_ray_and_leave_out_test_extras() -> None:
    import ray

    reqs = cluster.node_requirements()
    assert reqs[0] == f"ray[default]=={ray.__version__}"
    names = " ".join(reqs)
    assert "pyzmq" in names and "msgpack" in names and "pytest" not in names
    assert not [r for r in reqs[1:] if r.lower().startswith("ray")]


def test_every_installed_subpackage_is_shipped() -> None:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    packages = set(pyproject["tool"]["setuptools"]["packages"])
    assert packages == {"rayeval", *(f"rayeval.{name}" for name in cluster.SHIPPED_SUBPACKAGES)}


def test_shipped_package_is_complete_for_a_python_without_rayeval(
    worker_venv: Path, tmp_path: Path
) -> None:
    with cluster.assembled_package() as package:
        assert package.name == "rayeval"
        env = {**os.environ, "PYTHONPATH": str(package.parent)}
        code = "import rayeval.runner.env_server as m, rayeval.transport, rayeval.envs; print(m.__file__)"
        proc = subprocess.run([str(worker_venv / "bin" / "python"), "-c", code],
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert proc.stdout.strip().startswith(str(package))
        assert not list(package.rglob("__pycache__"))
    assert not package.exists()  # ray.init has uploaded it by then: nothing left behind


def test_worker_venv_cannot_import_rayeval(worker_venv: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(worker_venv / "bin" / "python"), "-c", "import rayeval"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode != 0
    assert "No module named 'rayeval'" in proc.stderr


def test_env_servers_run_on_the_resource_node_with_shipped_code(
    two_nodes: RayNodes, gsm8k_dir: Path, tmp_path: Path
) -> None:
    n, r = 8, 4
    run_dir = tmp_path / "run"
    before = {a["actor_id"] for a in placements(two_nodes, VENV / "bin" / "python", "EnvServer")["actors"]}
    proc = run_eval(two_nodes, tmp_path, gsm8k_dir, run_dir, n=n, r=r,
                    server_resources={"envworker": 1})
    assert proc.returncode == 0, proc.stderr[-4000:]

    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    keys = {(row["example_id"], row["rollout_idx"]) for row in rows}
    assert len(rows) == len(keys) == n * r
    assert keys == {(e, i) for e in range(n) for i in range(r)}
    assert [row for row in rows if row["error"] is not None] == []
    assert {row["server"] for row in rows} == {0, 1}
    metadata = json.loads((run_dir / "metadata.json").read_text())
    counts = metadata["counts"]
    assert (counts["sent"], counts["succeeded"], counts["errored"], counts["lost"]) == (n * r, n * r, 0, 0)

    seen = placements(two_nodes, VENV / "bin" / "python", "EnvServer")
    worker_nodes = {node["node_id"] for node in seen["nodes"] if "envworker" in node["resources"]}
    assert len(worker_nodes) == 1 and len(seen["nodes"]) == 2
    ours = [actor for actor in seen["actors"] if actor["actor_id"] not in before]
    assert len(ours) == 2
    assert {actor["node_id"] for actor in ours} == worker_nodes


def test_without_shipping_the_second_node_cannot_host_servers(
    two_nodes: RayNodes, gsm8k_dir: Path, tmp_path: Path
) -> None:
    """The control: the same run with shipping turned off fails, naming the missing package."""
    run_dir = tmp_path / "run"
    proc = run_eval(two_nodes, tmp_path, gsm8k_dir, run_dir, n=2, r=2,
                    server_resources={"envworker": 1}, ship_code=False)
    assert proc.returncode != 0
    assert "rayeval" in proc.stderr and "No module named" in proc.stderr, proc.stderr[-4000:]
