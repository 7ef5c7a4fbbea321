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

from rayeval.envs import load_environment
from rayeval.transport import Server

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


def classify_model_error(exc: BaseException) -> tuple[str, bool]:
    """(kind, retryable) for an exception raised by a model call or the scoring after it."""
    import openai

    if isinstance(exc, (asyncio.TimeoutError, openai.APITimeoutError)):
        return "model_timeout", True
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited", True
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500:
            return "model_server_error", True
        return f"model_http_{exc.status_code}", False
    if isinstance(exc, openai.APIConnectionError):
        return "model_connection", True
    if isinstance(exc, (KeyError, IndexError, ValueError, TypeError)):
        return "bad_request", False
    return type(exc).__name__, False


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
                max_retries=spec.max_retries,
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
        try:
            out = await self._env.rollout(
                self._client_for(spec),
                spec.name,
                example_id,
                sampling_args,
                extra_headers=headers,
                timeout=spec.timeout,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure becomes a record, never silence
            kind, retryable = classify_model_error(exc)
            reply = _error_reply(kind, _one_line(exc), retryable, started)
            reply["answer"] = row.answer
            return reply
        return {
            "answer": row.answer,
            "completion": out.completion,
            "reward": out.reward,
            "metrics": out.metrics,
            "usage": out.usage,
            "finish_reason": out.finish_reason,
            "timing": {"total_ms": (time.perf_counter() - started) * 1000.0},
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


def _node_ip() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except ImportError:
        pass
    return "127.0.0.1"


class EnvServerHandle:
    """Facade over an EnvServer Ray actor: validates, starts, and shuts down gracefully."""

    def __init__(
        self,
        index: int,
        env_id: str,
        env_args: dict[str, Any],
        *,
        num_cpus: float = 0.25,
        options: dict[str, Any] | None = None,
    ):
        import ray

        actor_cls = ray.remote(EnvServer)
        self.index = index
        self._actor = actor_cls.options(
            name=None,
            num_cpus=num_cpus,
            max_concurrency=10_000,
            **(options or {}),
        ).remote(env_id, env_args)
        self.address: str | None = None

    async def start(self, timeout: float) -> str:
        from ray.exceptions import RayError

        from .errors import ServerStartError

        try:
            self.address = await asyncio.wait_for(self._actor.start.remote(), timeout)
        except asyncio.TimeoutError as exc:
            raise ServerStartError(f"env server {self.index} did not start within {timeout:.0f}s") from exc
        except RayError as exc:
            raise ServerStartError(f"env server {self.index} failed to start: {_root_cause(exc)}") from exc
        return self.address

    async def stats(self, timeout: float = 5.0) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(self._actor.stats.remote(), timeout)
        except Exception:
            return None

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
