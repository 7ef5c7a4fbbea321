"""The env server: one environment behind one mandatory-routing ROUTER socket.

`EnvServer` is a plain class (unit-testable without Ray); `EnvServerHandle` makes it a Ray
actor at construction and is what the driver talks to for life-cycle calls. Rollout requests
themselves never go through Ray: they arrive over ZeroMQ, carrying ids and settings only
(example_id, rollout_idx, sampling args, model config). The server owns its dataset, so prompt
text never crosses the wire, and only the API key's *variable name* travels.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from rayeval.envs import load_environment
from rayeval.transport import Server

from .errors import ServerStartError
from .retry import classify, is_retryable, wait_before_retry

@dataclass(frozen=True)
class ModelSpec:
    """How an env server reaches the model; built from the request's `model` record."""

    name: str
    base_url: str
    api_key_var: str
    timeout: float
    max_retries: int

    @classmethod
    def from_wire(cls, record: dict[str, Any]) -> ModelSpec:
        return cls(
            name=str(record["name"]),
            base_url=str(record["base_url"]),
            api_key_var=str(record["api_key_var"]),
            timeout=float(record["timeout"]),
            max_retries=int(record["max_retries"]),
        )


class EnvServer:
    """Loads an environment and serves rollouts over the transport until closed."""

    def __init__(self, env_id: str, env_args: dict[str, Any], host: str | None = None):
        self._env = load_environment(env_id, env_args)
        self._env_id = env_id
        self._host = host
        self._clients: dict[ModelSpec, Any] = {}
        self._server: Server | None = None

    async def start(self) -> str:
        """Bind on this node's IP and return the address the driver should connect to."""
        host = self._host or _node_ip()
        self._server = Server(self._handle, host=host)
        return await self._server.start()

    async def info(self) -> dict[str, Any]:
        return {
            "env_id": self._env_id,
            "num_examples": len(self._env),
            "address": self._server.address if self._server else None,
            "pid": os.getpid(),
            "node_id": _node_id(),
        }

    async def stats(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self._server.stats) if self._server else {}

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    def _client_for(self, spec: ModelSpec) -> Any:
        """One AsyncOpenAI per (endpoint, key variable) per server, on the aiohttp transport."""
        client = self._clients.get(spec)
        if client is None:
            import openai

            client = openai.AsyncOpenAI(
                base_url=spec.base_url,
                api_key=os.environ.get(spec.api_key_var) or "EMPTY",
                timeout=spec.timeout,
                max_retries=0,  # retries happen around the whole rollout, counted (see _handle)
                http_client=openai.DefaultAioHttpClient(timeout=spec.timeout),
            )
            self._clients[spec] = client
        return client

    async def _handle(self, body: dict[str, Any]) -> dict[str, Any]:
        """Run one rollout; model and scoring failures come back as typed error records."""
        started = time.perf_counter()
        example_id = int(body["example_id"])
        rollout_idx = int(body["rollout_idx"])
        spec = ModelSpec.from_wire(body["model"])
        sampling_args = dict(body.get("sampling_args") or {})
        headers = {"X-Rayeval-Example-Id": str(example_id), "X-Rayeval-Rollout-Idx": str(rollout_idx)}
        try:
            row = self._env.row(example_id)
        except IndexError as exc:
            return _error_reply("bad_request", str(exc), False, started)
        client = self._client_for(spec)
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(spec.max_retries + 1),
            wait=wait_before_retry,
            retry=retry_if_exception(is_retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    out = await self._env.rollout(
                        client, spec.name, example_id, sampling_args,
                        extra_headers=headers, timeout=spec.timeout,
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure becomes a record, never silence
            kind, retryable = classify(exc)
            reply = _error_reply(kind, _one_line(exc), retryable, started)
            reply["error"]["attempts"] = attempts
            reply["answer"] = row.answer
            reply["attempts"] = attempts
            return reply
        return {
            "answer": row.answer,
            "completion": out.completion,
            "reward": out.reward,
            "metrics": out.metrics,
            "usage": out.usage,
            "finish_reason": out.finish_reason,
            "timing": {"total_ms": (time.perf_counter() - started) * 1000.0},
            "attempts": attempts,
            "error": None,
        }


def _error_reply(kind: str, message: str, retryable: bool, started: float) -> dict[str, Any]:
    return {
        "error": {"kind": kind, "message": message, "retryable": retryable},
        "timing": {"total_ms": (time.perf_counter() - started) * 1000.0},
    }


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:500]


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except ImportError:
        return None


def _node_ip() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except ImportError:
        pass
    return "127.0.0.1"


class EnvServerHandle:
    """Facade over an EnvServer Ray actor: starts it, brings it back, and ends it."""

    def __init__(
        self,
        index: int,
        env_id: str,
        env_args: dict[str, Any],
        *,
        num_cpus: float = 0.25,
        max_restarts: int = 3,
        options: dict[str, Any] | None = None,
    ):
        import ray

        actor_cls = ray.remote(EnvServer)
        self.index = index
        self._actor = actor_cls.options(
            num_cpus=num_cpus,
            max_concurrency=10_000,
            max_restarts=max_restarts,
            max_task_retries=0,  # rollouts do not travel through Ray; nothing to replay
            **(options or {}),
        ).remote(env_id, env_args)
        self.info: dict[str, Any] = {}

    async def start(self, timeout: float) -> str:
        """Bind the (new) incarnation's socket; return its address."""
        from ray.exceptions import RayError

        try:
            address = await asyncio.wait_for(self._actor.start.remote(), timeout)
            self.info = await asyncio.wait_for(self._actor.info.remote(), timeout)
        except asyncio.TimeoutError as exc:
            raise ServerStartError(f"env server {self.index} did not start within {timeout:.0f}s") from exc
        except RayError as exc:
            raise ServerStartError(f"env server {self.index} failed to start: {_root_cause(exc)}") from exc
        return address

    async def restart(self, timeout: float) -> str:
        """Get a live incarnation: Ray restarts a dead actor; a hung one is killed first."""
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError

        old_pid = self.info.get("pid")
        try:
            info = await asyncio.wait_for(self._actor.info.remote(), 5.0)
            hung = info.get("pid") == old_pid and info.get("address") is not None
        except asyncio.TimeoutError:
            hung = True  # e.g. SIGSTOPped or its event loop is blocked
        except ActorUnavailableError:
            hung = False  # Ray is restarting it already
        except ActorDiedError as exc:
            raise ServerStartError(f"env server {self.index} is gone: {_root_cause(exc)}") from exc
        if hung:
            ray.kill(self._actor, no_restart=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ServerStartError(f"env server {self.index} did not come back within {timeout:.0f}s")
            try:
                return await self.start(remaining)
            except ServerStartError:
                # Calls made while Ray is still killing or restarting the old incarnation fail;
                # only an actor Ray itself has given up on (DEAD) is final.
                if self.gcs_state() == "DEAD":
                    raise
            await asyncio.sleep(0.5)

    def _gcs_record(self) -> dict[str, Any] | None:
        """This actor's row in Ray's control store (GCS): ~1 ms, never touches the actor."""
        try:
            from ray._private import state  # internal, but the only dashboard-free view

            return state.actors(actor_id=self._actor._actor_id.hex()) or None
        except Exception:
            return None

    def gcs_state(self) -> str | None:
        record = self._gcs_record()
        return record.get("State") if record else None

    def incarnation_changed(self) -> bool | None:
        """Whether this actor died, is restarting, or runs in a new process since `info` was
        taken, asked of Ray (the actor's own event loop may be busy). None: Ray cannot tell."""
        record = self._gcs_record()
        if record is None:
            return None
        return record.get("State") != "ALIVE" or record.get("Pid") != self.info.get("pid")

    def kill(self) -> None:
        """Results are on disk by now; ending the process is all that is left to do."""
        import ray

        try:
            ray.kill(self._actor, no_restart=True)
        except Exception:
            pass


def _root_cause(exc: BaseException) -> str:
    """Ray wraps the actor's exception; dig out the first line of the original message."""
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:
        inner = getattr(cause, "cause", None) or cause.__cause__
        if inner is None or inner is cause:
            break
        cause, seen = inner, seen + 1
    text = str(cause or exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
