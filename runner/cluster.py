"""Ray: joining a cluster or starting a local one, and how env-server actors are placed.

Kept apart from the driver so placement and code shipping (runtime_env) have one home.

Placement. Env servers are scheduled with Ray's ``SPREAD`` strategy, not a placement group:
SPREAD spreads actors over the nodes that fit them, degrades gracefully to one node (a local
Ray, a cluster smaller than ``--num-servers``), honours custom resources, and adds no object
whose lifetime we would have to manage. A ``STRICT_SPREAD`` placement group would refuse to
place more servers than there are nodes (and wait forever for them), and a soft ``SPREAD``
group only adds a creation round-trip and a cleanup step for the same outcome. Servers are
independent (no gang scheduling is needed), so a group buys nothing here.

Custom resources draw servers to chosen nodes: start those nodes with
``ray start ... --resources='{"envworker": 8}'`` and ask ``server_resources={"envworker": 1}``;
each server then holds one unit of it, so at most 8 servers land on such a node, none elsewhere.

Code shipping. Joining an existing cluster, the other nodes may not have rayeval installed,
so the package travels as a job-level ``runtime_env`` ``py_modules`` entry (Ray uploads local
folders only from ``ray.init``, not from an actor's options). The installed package is spread
over several folders (``rayeval/`` plus ``runner/``, ``envs/``, ``transport/`` mapped by
package-dir), so one complete ``rayeval/`` tree is assembled in a temporary folder (a copy of
~300 KB of sources, milliseconds) for ``ray.init`` to zip and upload to the GCS; Ray names the
upload by its content hash and skips it when the cluster already has that code. Dependencies are
not shipped: the nodes need them installed (``node_requirements()``). A local Ray started by
the run ships nothing by default (its workers run the driver's own interpreter). When the
caller initialised Ray itself (a notebook), `connect` leaves it alone: to ship, call your own
``ray.init(address, runtime_env={"py_modules": [str(pkg)]})`` inside
``with assembled_package() as pkg:``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import EvalConfig
from .errors import RayevalError

log = logging.getLogger(__name__)

SHIPPED_SUBPACKAGES = ("runner", "envs", "transport")
"""rayeval's subpackages, as listed in pyproject.toml (a test keeps the two in step); with
package-dir each lives in its own top-level folder of the checkout."""


def node_requirements() -> list[str]:
    """What a node needs installed to host env servers when rayeval itself is shipped to it.

    rayeval's own runtime requirements (from its installed metadata, so they never drift from
    pyproject.toml), with Ray pinned to the driver's version: a cluster runs one Ray version.
    """
    from importlib.metadata import requires

    import ray

    wanted = [f"ray[default]=={ray.__version__}"]
    for req in requires("rayeval") or []:
        name = req.split(";")[0].strip()
        if "extra ==" in req or name.lower().startswith("ray[") or name.lower() == "ray":
            continue
        wanted.append(req)
    return wanted


_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")



def cluster_address(config: EvalConfig) -> str | None:
    """The cluster to join: --ray-address, else RAY_ADDRESS, else None (start a local Ray)."""
    return config.ray_address or os.environ.get("RAY_ADDRESS") or None


def should_ship(config: EvalConfig) -> bool:
    """Ship rayeval to the actors? `ship_code` decides if set; else only when joining a cluster."""
    ship = config.ship_code
    if ship is not None:
        return bool(ship)
    return cluster_address(config) is not None


def connect(config: EvalConfig) -> bool:
    """Join --ray-address / RAY_ADDRESS, or start a local Ray; True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    address = cluster_address(config)
    kwargs: dict[str, Any] = {
        "logging_level": logging.INFO if config.verbose else logging.WARNING,
        "log_to_driver": config.verbose,
    }
    with contextlib.ExitStack() as stack:
        if should_ship(config):
            # Job level: Ray uploads local folders only from ray.init, not per actor. A
            # submitted job's own runtime_env (working_dir, excludes) is merged with this one.
            # ray.init zips and uploads the folder, so it is not needed once init returns.
            package = stack.enter_context(assembled_package())
            kwargs["runtime_env"] = {"py_modules": [str(package)]}
        if not address:
            # No dashboard: it costs ~2 s of start-up and a run does not need it.
            ray.init(include_dashboard=False, **kwargs)
        else:
            _join(address, kwargs)
    return True


def _join(address: str, kwargs: dict[str, Any]) -> None:
    import ray

    try:
        ray.init(address=address, **kwargs)
    except Exception as exc:
        if _is_auth_error(exc):
            raise RayevalError(
                f"the Ray cluster at {address} rejected this client's token: set "
                "RAY_AUTH_MODE=token and provide the cluster's token (~/.ray/auth_token on "
                "the head, or RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH)"
            ) from exc
        if isinstance(exc, ValueError) and "Failed to merge" in str(exc):
            raise RayevalError(
                "cannot ship rayeval to the cluster: the submitted job's runtime_env already "
                "sets py_modules; add rayeval's there instead and turn shipping off"
            ) from exc
        raise


def _is_auth_error(exc: BaseException) -> bool:
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 10:
        if type(cause).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(cause):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


_defer_to_reaper = False
_reaper_armed = False

# Runs detached: waits for the driver to exit, then ends the local Ray it leaves behind, the
# processes' children first collected, SIGTERM then SIGKILL. Only the pids it was given.
_REAPER = """
import os, sys, time, signal, psutil
parent, pids = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
while psutil.pid_exists(parent) and psutil.Process(parent).status() != psutil.STATUS_ZOMBIE:
    time.sleep(0.2)
procs = []
for pid in pids:
    try:
        proc = psutil.Process(pid)
        procs += [proc, *proc.children(recursive=True)]
    except psutil.Error:
        pass
for proc in procs:
    try: proc.terminate()
    except psutil.Error: pass
gone, alive = psutil.wait_procs(procs, timeout=5)
for proc in alive:
    try: proc.kill()
    except psutil.Error: pass
"""


def defer_local_shutdown() -> None:
    """For the CLI: a Ray this process started is ended by a detached reaper after exit.

    Ray's graceful shutdown takes ~1.5 s here, after every result is already on disk; the
    command should not make its user wait for it. Call `exit_now(code)` to leave.
    """
    global _defer_to_reaper
    _defer_to_reaper = True


def shutdown() -> None:
    import ray

    global _reaper_armed
    if _defer_to_reaper and not _reaper_armed:
        _reaper_armed = _hand_to_reaper()
        if _reaper_armed:
            return
    ray.shutdown()


def _hand_to_reaper() -> bool:
    try:
        from ray._private import worker  # the local node's process table (internal API)

        import psutil

        node = worker._global_node
        roots = [
            info.process.pid
            for infos in node.all_processes.values()
            for info in infos
            if info.process is not None
        ]
        # Collected now, while the tree is intact: once this process exits, the raylet may go
        # first and its agents would be orphaned out of reach.
        pids = set(roots)
        for pid in roots:
            try:
                pids.update(child.pid for child in psutil.Process(pid).children(recursive=True))
            except psutil.Error:
                pass
    except Exception:
        return False
    if not pids:
        return False
    subprocess.Popen(
        [sys.executable, "-c", _REAPER, str(os.getpid()), *map(str, pids)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return True


def exit_now(code: int) -> int:
    """Leave at once if the reaper owns Ray's shutdown (skipping Ray's atexit hook), else return."""
    if _reaper_armed:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def server_resources(config: EvalConfig) -> dict[str, float]:
    """Custom resources each env server holds (e.g. {"envworker": 1}); empty = none."""
    resources = config.server_resources
    return {str(name): float(amount) for name, amount in resources.items()}


def actor_options(config: EvalConfig) -> dict[str, Any]:
    """Extra `.options(...)` for env-server actors: SPREAD placement and custom resources.

    The code shipped to the nodes is not here: Ray takes local folders to upload only at
    the job level, so `connect` passes it to `ray.init`.
    """
    options: dict[str, Any] = {"scheduling_strategy": "SPREAD"}
    resources = server_resources(config)
    if resources:
        options["resources"] = resources
    return options


@contextlib.contextmanager
def assembled_package() -> Iterator[Path]:
    """A complete `rayeval/` package folder assembled from the installed one, for py_modules.

    The folder is named `rayeval`, so Ray puts its parent on the workers' sys.path and
    `import rayeval.runner.env_server` resolves there. Removed on exit: Ray has zipped and
    uploaded it by the time `ray.init` returns (to the GCS, skipped if that content is there).
    """
    sources = _package_sources()
    with tempfile.TemporaryDirectory(prefix="rayeval-ship-") as root:
        target = Path(root) / "rayeval"
        target.mkdir()
        for item in sources.pop("").iterdir():  # rayeval/__init__.py and sibling modules
            if item.is_file() and item.suffix == ".py":
                shutil.copy2(item, target / item.name)
        for name, folder in sources.items():
            shutil.copytree(folder, target / name, ignore=_IGNORED)
        yield target


def _package_sources() -> dict[str, Path]:
    """Where each part of the installed rayeval lives: "" for the top, then each subpackage."""
    import importlib.util

    import rayeval

    top = Path(rayeval.__file__).resolve().parent
    sources: dict[str, Path] = {"": top}
    for name in SHIPPED_SUBPACKAGES:
        spec = importlib.util.find_spec(f"rayeval.{name}")
        if spec is None or not spec.submodule_search_locations:
            raise RayevalError(f"cannot ship rayeval to the cluster: rayeval.{name} is not installed")
        sources[name] = Path(list(spec.submodule_search_locations)[0]).resolve()
    return sources
