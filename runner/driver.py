"""The driver: fans rollouts out over env servers and accounts for every one of them.

Shape of a run: validate the environment locally (a bad path fails in a second, before Ray
starts), start the model simulator or probe the endpoint, start K env-server actors, then
dispatch every (example_id, rollout_idx) to the server with the fewest outstanding requests.
Each request ends as a row in results.jsonl: a result, or an explicit error record. The
ledger sent = succeeded + errored is checked at the end; `lost` is what would be left over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from rayeval.envs import Environment, load_environment
from rayeval.transport import RemoteError, RequestTimeout, TransportClosed, TransportError

from . import cluster
from .config import EvalConfig
from .env_server import EnvServerHandle
from .errors import ConfigError
from .retry import worst_case_backoff_s
from .pool import NoServers, ServerPool
from .preflight import probe_endpoint
from .results import Counts, ResultRow, ResultWriter, default_run_dir, write_metadata
from .resume import ResumeState, check_matches, compact_results, find_latest_incomplete
from .stats import RunningStats

log = logging.getLogger(__name__)

SERVER_START_TIMEOUT = 180.0
# Slack on top of the model-call budget before the driver gives a request up: covers queueing
# inside the env server and scoring. Every wait has a deadline; none is hours long.
REQUEST_SLACK_S = 60.0
# How many times one rollout may follow its server down and move to another before it is
# recorded as an error (a server that keeps dying must not keep a run alive forever).
MAX_MOVES = 5
# A request unanswered this long is sent again with the same id: the server joins the running
# rollout or answers from its result cache, so this only recovers a message lost in a dying
# connection (libzmq's ~50 ms window), never runs a rollout twice on one server.
RESEND_AFTER_S = 15.0
# `-c -1` (unlimited) still keeps at most this many rollouts in flight: every pending request
# costs the driver a few KB (task, future, record), so a 100k-rollout run would otherwise hold
# all of them at once. No endpoint serves more concurrent requests from one client usefully.
UNLIMITED_IN_FLIGHT = 8192

ProgressHook = Callable[[int, int], None]
"""Called as (done, total) after every row; the CLI and notebooks draw their bars from it."""


@dataclass
class RunOutcome:
    """What `run_eval` hands back; the public `EvalResult` is built from it."""

    run_dir: Path
    metadata: dict[str, Any]


def resolve_local_paths(env_args: dict[str, Any]) -> dict[str, Any]:
    """Make relative `*_path`/`*_dir`/`*_file` args absolute: actors do not share our cwd."""
    resolved = dict(env_args)
    for key, value in env_args.items():
        if isinstance(value, str) and key.endswith(("path", "dir", "file")) and value:
            candidate = Path(value).expanduser()
            if not candidate.is_absolute() and candidate.exists():
                resolved[key] = str(candidate.resolve())
    return resolved


def rollout_deadline(config: EvalConfig) -> float:
    """The longest one request may take, derived from the model-call budget."""
    return (
        config.request_timeout * (config.max_retries + 1)
        + worst_case_backoff_s(config.max_retries)
        + REQUEST_SLACK_S
    )


class _Dispatch:
    """The per-run state of the fan-out: servers, ledger, statistics, output."""

    def __init__(
        self,
        config: EvalConfig,
        env: Environment,
        pool: ServerPool,
        writer: ResultWriter,
        model_record: dict[str, Any],
        progress: ProgressHook | None,
        stats: RunningStats,
        done: set[tuple[int, int]],
    ):
        self.config = config
        self.env = env
        self.pool = pool
        self.writer = writer
        self.model_record = model_record
        self.progress = progress
        self.counts = Counts()
        self.stats = stats
        self.done = done
        self.first_result: float | None = None
        self.last_result: float | None = None
        self.total = 0
        self.deadline = rollout_deadline(config)
        self.run_token = uuid.uuid4().hex[:12]

    async def run(self, num_examples: int) -> None:
        r = self.config.rollouts_per_example
        todo = [
            (example_id, rollout_idx)
            for example_id in range(num_examples)
            for rollout_idx in range(r)
            if (example_id, rollout_idx) not in self.done
        ]
        self.total = len(todo)
        limit = self.config.max_concurrent
        slots = asyncio.Semaphore(limit if limit > 0 else UNLIMITED_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        for example_id, rollout_idx in todo:
            await slots.acquire()
            self.counts.sent += 1
            task = asyncio.create_task(self._one(example_id, rollout_idx, slots))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*list(tasks))

    async def _one(self, example_id: int, rollout_idx: int, slots: asyncio.Semaphore) -> None:
        body = {
            "example_id": example_id,
            "rollout_idx": rollout_idx,
            "model": self.model_record,
            "sampling_args": self.config.sampling_args,
        }
        # One id per rollout for the whole run: a resend is recognised, never run twice.
        request_id = f"{self.run_token}:{example_id}:{rollout_idx}"
        server: int | None = None
        try:
            for move in range(MAX_MOVES + 1):
                try:
                    slot = await self.pool.acquire(self.deadline)
                except NoServers as exc:
                    reply = _error("no_servers", str(exc), True)
                    break
                server = slot.index
                try:
                    reply = await slot.client.request(
                        body, timeout=self.deadline, request_id=request_id, resend_after=RESEND_AFTER_S
                    )
                    break
                except TransportClosed:
                    # Its server was declared down: the same request moves to a live one.
                    self.counts.redelivered += 1
                    reply = _error("server_lost", f"env servers failed {move + 1} times", True)
                except RemoteError as exc:
                    reply = _error("server_error:" + exc.kind, exc.message, exc.retryable)
                    break
                except RequestTimeout:
                    reply = _error("request_timeout", f"no reply within {self.deadline:.0f}s", True)
                    break
                except TransportError as exc:
                    reply = _error("transport", str(exc), True)
                    break
        finally:
            slots.release()
        self._record(example_id, rollout_idx, server, reply)

    def _record(
        self, example_id: int, rollout_idx: int, server: int | None, reply: dict[str, Any]
    ) -> None:
        key = (example_id, rollout_idx)
        if key in self.done:  # cannot happen by construction; the guard makes it impossible
            self.counts.duplicates_dropped += 1
            return
        self.done.add(key)
        error = reply.get("error")
        reward = reply.get("reward")
        self.counts.retried += max(int(reply.get("attempts") or 1) - 1, 0)
        row = ResultRow(
            example_id=example_id,
            rollout_idx=rollout_idx,
            answer=reply["answer"] if "answer" in reply else self.env.row(example_id).answer,
            completion=reply.get("completion"),
            reward=None if error else reward,
            metrics=reply.get("metrics") or {},
            error=error,
            timing=reply.get("timing") or {},
            usage=reply.get("usage"),
            server=server,
        )
        self.writer.write(row)
        if error:
            self.counts.errored += 1
            self.stats.add(example_id, None, None)
        else:
            self.counts.succeeded += 1
            self.stats.add(example_id, float(reward), float(reward) >= 1.0)
        now = time.time()
        self.first_result = self.first_result or now
        self.last_result = now
        if self.progress is not None:
            self.progress(self.counts.succeeded + self.counts.errored, self.total)


def _error(kind: str, message: str, retryable: bool) -> dict[str, Any]:
    return {"error": {"kind": kind, "message": message, "retryable": retryable}}


def _resolve_run_dir(config: EvalConfig) -> Path:
    if config.resume is not None:
        if config.resume is True or config.resume == "":
            return find_latest_incomplete(config.output_root, config.env_id, config.model)
        return Path(str(config.resume))
    if config.run_dir:
        return Path(config.run_dir)
    return default_run_dir(config.output_root, config.env_id, config.model)


async def run_eval(config: EvalConfig, progress: ProgressHook | None = None) -> RunOutcome:
    """Run one eval end to end; raises RayevalError subclasses for user-facing failures."""
    started = time.time()
    env_args = resolve_local_paths(config.env_args)
    # Load in the driver first: bad env args or a missing dataset fail here, before Ray starts.
    env = await asyncio.to_thread(load_environment, config.env_id, env_args)
    available = len(env)
    num_examples = available if config.num_examples == -1 else config.num_examples
    if num_examples > available:
        raise ConfigError(
            f"-n {num_examples} asks for more examples than {config.env_id} has ({available})"
        )
    run_dir = _resolve_run_dir(config)
    stats = RunningStats()
    done: set[tuple[int, int]] = set()
    resumed = None
    if config.resume is not None:
        check_matches(run_dir, config)
        resumed = compact_results(
            run_dir, lambda row: stats.add(int(row["example_id"]), float(row["reward"]),
                                           float(row["reward"]) >= 1.0)
        )
        done = set(resumed.done)
    async with contextlib.AsyncExitStack() as stack:
        sim = None
        if config.is_sim:
            from .simulator import start_in_subprocess

            sim = await asyncio.to_thread(
                start_in_subprocess, config.env_id, env_args, config.sim_args
            )
            stack.callback(sim.stop)
            base_url = sim.base_url
        else:
            base_url = config.base_url or "https://api.openai.com/v1"
            await probe_endpoint(base_url)

        if await asyncio.to_thread(cluster.connect, config):
            stack.callback(cluster.shutdown)
        options = cluster.actor_options(config)
        handles = [
            EnvServerHandle(
                i, config.env_id, env_args, num_cpus=config.server_cpus,
                max_restarts=config.max_server_restarts, options=options,
            )
            for i in range(config.num_servers)
        ]
        for handle in handles:
            stack.callback(handle.kill)
        pool = ServerPool(handles, hang_timeout=config.server_hang_timeout)
        stack.push_async_callback(pool.close)
        await pool.start(SERVER_START_TIMEOUT)
        serving = time.time()

        model_record = {
            "name": "sim" if config.is_sim else config.model,
            "base_url": base_url,
            "api_key_var": config.api_key_var,
            "timeout": config.request_timeout,
            "max_retries": config.max_retries,
        }
        dispatch = _Dispatch(config, env, pool, ResultWriter(run_dir), model_record, progress,
                             stats, done)
        stack.callback(dispatch.writer.close)

        def snapshot(end: float) -> dict[str, Any]:
            return _metadata(
                config, env_args, base_url, num_examples, dispatch, run_dir,
                timing={
                    "start": started,
                    "serving": serving,
                    "end": end,
                    "wall_s": end - started,
                    "startup_s": serving - started,
                    "first_result_s": (dispatch.first_result or end) - started,
                    "last_result": dispatch.last_result or end,
                    "rollouts_per_s": dispatch.counts.sent / max(end - serving, 1e-9),
                },
                sim_requests=sim.stats().get("requests") if sim is not None and end > serving else None,
                resumed=resumed,
            )

        # Written before the first request: a killed run leaves a folder that -R can resume.
        if resumed is None:
            write_metadata(run_dir, {**snapshot(serving), "complete": False})
        await dispatch.run(num_examples)
        dispatch.writer.close()
        dispatch.counts.late_replies = pool.late_replies()
        metadata = snapshot(time.time())
        write_metadata(run_dir, metadata)
    return RunOutcome(run_dir=run_dir, metadata=metadata)


def _metadata(
    config: EvalConfig,
    env_args: dict[str, Any],
    base_url: str,
    num_examples: int,
    dispatch: _Dispatch,
    run_dir: Path,
    timing: dict[str, float],
    sim_requests: int | None,
    resumed: ResumeState | None,
) -> dict[str, Any]:
    from rayeval import __version__

    summary = dispatch.stats.summary(config.rollouts_per_example)
    metadata: dict[str, Any] = {
        "version": 1,
        "rayeval_version": __version__,
        "env_id": config.env_id,
        "env_args": env_args,
        "model": config.model,
        "base_url": base_url,
        "api_key_var": config.api_key_var,
        "num_examples": num_examples,
        "rollouts_per_example": config.rollouts_per_example,
        "max_concurrent": config.max_concurrent,
        "num_servers": config.num_servers,
        "sampling_args": config.sampling_args,
        "avg_reward": summary["avg_reward"],
        "reward_stderr": summary["reward_stderr"],
        "reward_std": summary["reward_std"],
        "pass_at_k": summary["pass_at_k"],
        "counts": dispatch.counts.as_dict(),
        "timing": timing,
        "run_dir": str(run_dir),
        "servers": dispatch.pool.servers_info(),
        "pool_events": asdict(dispatch.pool.events),
        "complete": dispatch.counts.lost == 0 and len(dispatch.done) >= num_examples * config.rollouts_per_example,
    }
    if resumed is not None:
        metadata["resumed"] = {
            "kept": resumed.kept,
            "rerun_errored": resumed.dropped_errored,
            "torn_lines_dropped": resumed.dropped_torn,
        }
    if config.is_sim:
        metadata["sim_args"] = config.sim_args
        metadata["sim_requests"] = sim_requests
    return metadata
