"""Start and stop real `ray start` nodes for tests, touching no other Ray on the machine.

Every node of one `RayNodes` shares a unique, short `--temp-dir` (Unix socket paths must stay
under ~107 bytes, so not pytest's long tmp_path). Stopping never uses `ray stop`, which ends
*every* Ray on the machine, including other people's test sessions: it signals the processes
whose command line names our temp dir (gcs_server, raylet, dashboard, monitors) plus all their
descendants collected before the first signal (workers, agents, job drivers, whose titles
`ray::...` no longer name the temp dir), SIGTERM first, SIGKILL whatever is left after a grace,
as `ray stop` does (the head's gcs_server and raylet outlive a SIGTERM sent to every process at
once, so the grace is short).

Each cluster gets its own auth token (RAY_AUTH_TOKEN, RAY_AUTH_MODE=token), so tests neither
depend on nor rewrite the shared ~/.ray/auth_token.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _agent_ports() -> list[str]:
    return [f"--dashboard-agent-listen-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}"]


class RayNodes:
    """A head plus optional worker nodes started with the `ray` CLI of given venvs."""

    def __init__(self) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="rvray-", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_port: int | None = None
        self.log = Path(self.temp_dir) / "ray-start.log"
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        # A `ray start` run from a checkout must not see the driver's RAY_ADDRESS or venv.
        self.env.pop("RAY_ADDRESS", None)
        self.env.pop("VIRTUAL_ENV", None)

    @property
    def dashboard_url(self) -> str:
        assert self.dashboard_port is not None, "head started without the dashboard"
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _ray(self, venv: Path, *args: str, cwd: str | None = None, timeout: float = 180) -> None:
        env = dict(self.env)
        # The node's processes run this venv's python; its bin/ leads PATH so job drivers
        # started on this node find the venv's console scripts (`rayeval`).
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        with open(self.log, "a") as log:
            proc = subprocess.run(
                [str(venv / "bin" / "ray"), "start", *args, f"--temp-dir={self.temp_dir}",
                 "--disable-usage-stats"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd or self.temp_dir,
                timeout=timeout,
            )
        if proc.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{self.log.read_text()[-4000:]}")

    def start_head(self, venv: Path, *, num_cpus: int = 1, dashboard: bool = False,
                   cwd: str | None = None) -> None:
        # Free ports throughout: a session's local Ray (tests/conftest.py) may hold the defaults
        # in the same network namespace; with the dashboard off Ray still binds its port.
        port = free_port()
        args = ["--head", f"--port={self.port}", f"--num-cpus={num_cpus}",
                "--dashboard-host=127.0.0.1", f"--dashboard-port={port}", *_agent_ports()]
        if dashboard:
            self.dashboard_port = port
            args.append("--include-dashboard=true")
        else:
            args.append("--include-dashboard=false")
        self._ray(venv, *args, cwd=cwd)

    def add_node(self, venv: Path, *, num_cpus: int, resources: str | None = None) -> None:
        # A second node on the same machine needs its own agent ports, not the defaults.
        args = [f"--address={self.address}", f"--num-cpus={num_cpus}", *_agent_ports()]
        if resources:
            args.append(f"--resources={resources}")
        # cwd: a folder without the checkout, so the node cannot pick rayeval up from its cwd.
        node_cwd = Path(self.temp_dir) / "node-cwd"
        node_cwd.mkdir(exist_ok=True)
        self._ray(venv, *args, cwd=str(node_cwd))

    def processes(self) -> list[psutil.Process]:
        """Our cluster's processes: those naming the temp dir, and all their descendants."""
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if any(self.temp_dir in part for part in cmdline):
                found[proc.pid] = proc
        for proc in list(found.values()):
            try:
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
            except psutil.Error:
                pass
        found.pop(os.getpid(), None)
        return list(found.values())

    def stop(self, grace: float = 5.0) -> None:
        procs = self.processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=grace)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        # Orphans re-parented before we looked (none expected): one more pass by name of dir.
        for proc in self.processes():
            try:
                proc.kill()
            except psutil.Error:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> RayNodes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_PLACEMENTS = r"""
import json, sys
import ray
from ray.util.state import list_actors

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
actors = list_actors(address=sys.argv[3], filters=[("class_name", "=", sys.argv[2])], detail=True,
                     limit=10_000, raise_on_missing_output=False)
print(json.dumps({
    "actors": [{"actor_id": a.actor_id, "node_id": a.node_id, "state": a.state, "pid": a.pid}
               for a in actors],
    "nodes": [{"node_id": n["NodeID"], "alive": n["Alive"], "resources": n["Resources"]}
              for n in ray.nodes()],
}))
"""


def placements(nodes: RayNodes, python: Path, class_name: str) -> dict:
    """Actors of `class_name` (alive or dead) with their node ids, and the cluster's nodes.

    Needs the head's dashboard: the state API is served there.
    """
    proc = subprocess.run(
        [str(python), "-c", _PLACEMENTS, nodes.address, class_name, nodes.dashboard_url],
        capture_output=True, text=True, env=nodes.env, cwd=nodes.temp_dir, timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"listing actors failed:\n{proc.stderr[-4000:]}")
    import json

    return json.loads(proc.stdout.strip().splitlines()[-1])
