"""A simulated OpenAI-compatible chat-completions server, for testing and benchmarking the runner.

This is a simulator, not a model: it does not read or reason about the question. It looks the
last user message up in the environment's own prompts, and replies with a fixed reasoning line
and `The final answer is \\boxed{ANSWER}.`, where ANSWER is the gold answer with probability
`p_correct` and a different number otherwise. Every decision is a deterministic function of
(seed, example_id, rollout_idx) (plus an attempt counter for injected faults), so runs are
reproducible and the expected accuracy of a run is known in advance.

Wire contract beyond plain OpenAI:
- `X-Rayeval-Rollout-Idx` (request header): which rollout of the example this is. Without it the
  server uses a per-server request counter, and replies are no longer reproducible.
- `X-Rayeval-Example-Id` (optional): checked against the prompt lookup, which is authoritative;
  disagreements are counted in /stats as `example_id_mismatches`.

Endpoints: `POST /v1/chat/completions` (and `/chat/completions`), `GET /v1/models`, `GET /stats`,
`GET /health`.

Run standalone: `python -m rayeval.runner.simulator --env gsm8k --port 8000`
(the CLI's `rayeval sim-server` calls `serve_forever`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["SimConfig", "SimProcess", "SimServer", "serve_forever", "start_in_subprocess"]

ROLLOUT_HEADER = "X-Rayeval-Rollout-Idx"
EXAMPLE_HEADER = "X-Rayeval-Example-Id"
UNKNOWN_EXAMPLE_ID = -1


@dataclass(frozen=True)
class SimConfig:
    """Behaviour of the simulator; built from the CLI's `--sim-args` JSON with `from_dict`.

    The three fault rates are chosen per (seed, example, rollout, attempt): the attempt counter
    is the number of earlier requests for the same (example, rollout), so a retry draws afresh
    and usually succeeds, and the same run with the same retries sees the same faults.
    """

    p_correct: float = 0.7
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0  # extra uniform delay in [0, jitter), deterministic per request
    seed: int = 0
    fail_rate: float = 0.0  # -> HTTP 500
    rate_limit_rate: float = 0.0  # -> HTTP 429 with Retry-After
    retry_after_s: float = 1.0  # the Retry-After a 429 carries
    hang_rate: float = 0.0  # -> the request is never answered (until the server stops)
    completion_bytes: int = 0  # pad completions to about this size (large-reply tests)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> SimConfig:
        values = dict(values or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in values.items():
            field = fields.get(key)
            if field is None:
                raise ValueError(f"unknown simulator option {key!r}; known: {', '.join(fields)}")
            if field.type == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"simulator option {key!r} must be an int, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"simulator option {key!r} must be a number, got {value!r}")
            else:
                values[key] = float(value)
        config = cls(**values)
        config._validate()
        return config

    def _validate(self) -> None:
        for key in ("p_correct", "fail_rate", "rate_limit_rate", "hang_rate"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"simulator option {key!r} must be in [0, 1], got {value}")
        for key in ("latency_ms", "latency_jitter_ms", "retry_after_s"):
            value = getattr(self, key)
            if not 0.0 <= value < float("inf"):
                raise ValueError(f"simulator option {key!r} must be >= 0 and finite, got {value}")
        if self.fail_rate + self.rate_limit_rate + self.hang_rate > 1.0:
            raise ValueError(
                "simulator options 'fail_rate' + 'rate_limit_rate' + 'hang_rate' must not exceed 1"
            )

    @property
    def injects_faults(self) -> bool:
        return self.fail_rate + self.rate_limit_rate + self.hang_rate > 0.0


def _uniforms(key: str) -> tuple[float, ...]:
    """Four independent uniforms in [0, 1) from a stable digest of `key`.

    blake2b rather than `hash()`, which is salted per process, and rather than a seeded
    `random.Random`, whose construction costs more than the digest.
    """
    digest = hashlib.blake2b(key.encode(), digest_size=32).digest()
    return tuple(int.from_bytes(digest[i : i + 8], "little") / 2.0**64 for i in range(0, 32, 8))


def _message_text(message: Any) -> str | None:
    """The text of a chat message's content (a string, or a list of OpenAI content parts)."""
    if not isinstance(message, Mapping):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return None


def _last_user_text(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _message_text(message)
    return None


def _wrong_answer(gold: str, u: float) -> str:
    """A number that is numerically different from `gold`, chosen by the uniform `u`."""
    offset = 1 + int(u * 9)  # 1..9, never 0
    try:
        value = float(gold.replace(",", "").strip())
    except ValueError:
        return str(offset * 7)  # gold is not a number, so any number differs from it
    if value.is_integer():
        return str(int(value) + offset)
    return repr(value + offset)


def _count_words(messages: list[Any]) -> int:
    return sum(len(text.split()) for text in map(_message_text, messages) if text)


def _json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    # Plain Response with pre-encoded bytes: cheaper than web.json_response's extra layers.
    return web.Response(
        status=status, body=json.dumps(payload).encode(), content_type="application/json", headers=headers
    )


class SimServer:
    """The simulator as an aiohttp server in the current event loop.

    Lifecycle: created -> serving (after `start()`) -> closed (after `stop()`); a server does not
    restart. For a server in its own process (its own core), use `start_in_subprocess`.
    """

    def __init__(self, env: Any, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.config = config or SimConfig()
        self.host = host
        self.port = port
        self._state = "created"
        # question text -> (example_id, gold answer), built once; the hot path is one dict lookup.
        self._lookup: dict[str, tuple[int, str]] = {}
        for row in env.rows:
            text = _last_user_text(list(row.prompt))
            if text is not None:
                self._lookup.setdefault(text, (int(row.example_id), str(row.answer)))
        self.num_examples = len(env.rows)
        self._requests = 0
        self._by_status: dict[str, int] = {}
        self._mismatches = 0
        self._attempts: dict[tuple[int, int], int] = {}  # only filled when faults are injected
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> str:
        """Bind and serve; return the base URL (`http://HOST:PORT/v1`)."""
        if self._state != "created":
            raise RuntimeError(f"SimServer.start() on a server that is {self._state}")
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/models", self._models)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/v1/stats", self._stats)
        app.router.add_get("/health", self._health)
        # No access log: per-request logging would cost more than the request itself.
        # A short shutdown timeout: hung requests are released by `_closing`, nothing else lingers.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        self.base_url = f"http://{host}:{self.port}/v1"
        self._state = "serving"
        return self.base_url

    async def stop(self) -> None:
        if self._state != "serving":
            self._state = "closed"
            return
        self._state = "closed"
        self._closing.set()
        assert self._runner is not None
        await self._runner.cleanup()

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def stats(self) -> dict[str, Any]:
        return {
            "requests": self._requests,
            "by_status": dict(self._by_status),
            "example_id_mismatches": self._mismatches,
        }

    # -- handlers ------------------------------------------------------------------------------

    def _count(self, status: str) -> None:
        self._requests += 1
        self._by_status[status] = self._by_status.get(status, 0) + 1

    def _error(self, status: int, message: str, kind: str, headers: Mapping[str, str] | None = None) -> web.Response:
        self._count(str(status))
        return _json_response(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

    async def _chat_completions(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._error(400, "request body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self._error(400, "'messages' must be a list", "invalid_request_error")
        if body.get("stream"):
            return self._error(400, "the simulator does not stream", "invalid_request_error")
        messages = body["messages"]

        question = _last_user_text(messages)
        found = self._lookup.get(question) if question is not None else None
        example_id, gold = found if found is not None else (UNKNOWN_EXAMPLE_ID, None)

        headers = request.headers
        rollout_header = headers.get(ROLLOUT_HEADER)
        try:
            rollout_idx = int(rollout_header) if rollout_header is not None else self._requests
        except ValueError:
            return self._error(400, f"{ROLLOUT_HEADER} must be an integer", "invalid_request_error")
        claimed = headers.get(EXAMPLE_HEADER)
        if claimed is not None and claimed != str(example_id):
            self._mismatches += 1

        config = self.config
        seed = config.seed
        if config.injects_faults:
            attempt = self._attempts.get((example_id, rollout_idx), 0)
            self._attempts[(example_id, rollout_idx)] = attempt + 1
            fault = _uniforms(f"{seed}:{example_id}:{rollout_idx}:{attempt}:fault")[0]
            if fault < config.fail_rate:
                return self._error(500, "simulated server error", "server_error")
            fault -= config.fail_rate
            if fault < config.rate_limit_rate:
                retry = config.retry_after_s
                return self._error(
                    429,
                    "simulated rate limit",
                    "rate_limit_error",
                    {"Retry-After": f"{retry:g}", "retry-after-ms": f"{retry * 1000:g}"},
                )
            fault -= config.rate_limit_rate
            if fault < config.hang_rate:
                self._count("hang")
                await self._closing.wait()  # released only when the server stops
                return _json_response(503, {"error": {"message": "simulator stopped", "type": "server_error"}})

        u_correct, u_wrong, u_jitter, _ = _uniforms(f"{seed}:{example_id}:{rollout_idx}")
        if gold is None:
            answer = _wrong_answer(str(len(question or "")), u_wrong)
        elif u_correct < config.p_correct:
            answer = gold
        else:
            answer = _wrong_answer(gold, u_wrong)

        delay_ms = config.latency_ms + u_jitter * config.latency_jitter_ms
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0)

        content = f"Working through the problem step by step gives the result.\nThe final answer is \\boxed{{{answer}}}."
        if config.completion_bytes > len(content):
            content = "." * (config.completion_bytes - len(content)) + "\n" + content
        prompt_tokens = _count_words(messages)
        completion_tokens = len(content.split())
        self._count("200")
        return _json_response(
            200,
            {
                "id": f"chatcmpl-sim-{self._requests}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or "sim",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    async def _models(self, request: web.Request) -> web.Response:
        return _json_response(
            200, {"object": "list", "data": [{"id": "sim", "object": "model", "created": 0, "owned_by": "rayeval"}]}
        )

    async def _stats(self, request: web.Request) -> web.Response:
        return _json_response(200, self.stats)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")


# -- standalone process ----------------------------------------------------------------------


def _run(main: Any) -> Any:
    """asyncio.run with uvloop when it is installed (it raises the request ceiling)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def serve_forever(
    env_id: str,
    env_args: dict[str, Any],
    sim_args: dict[str, Any],
    host: str,
    port: int,
    ready_file: str | None = None,
    parent_pid: int | None = None,
) -> None:
    """Serve the simulator for `env_id` until SIGINT or SIGTERM (blocking).

    With `parent_pid`, it also stops when that process is gone (a driver killed with SIGKILL
    cannot stop its simulator, and an orphan would hold its port and a core forever).
    """
    from rayeval.envs import load_environment  # lazily: environments may import heavy libraries

    config = SimConfig.from_dict(sim_args)  # validate before the (slower) environment load
    env = load_environment(env_id, env_args)

    async def main() -> int:
        server = SimServer(env, config, host=host, port=port)
        base_url = await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            print(
                f"rayeval sim-server: serving {env_id} ({server.num_examples} examples) at {base_url}"
                " (a simulator, not a model)",
                flush=True,
            )
            if ready_file:
                # Write then rename, so a reader polling for the file never sees half a URL.
                tmp = f"{ready_file}.tmp"
                with open(tmp, "w") as fh:
                    fh.write(base_url + "\n")
                os.replace(tmp, ready_file)
            if parent_pid is not None:
                watcher = asyncio.create_task(_stop_when_orphaned(parent_pid, stop))
            await stop.wait()
            if parent_pid is not None:
                watcher.cancel()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await server.stop()
        return server.stats["requests"]

    served = _run(main())
    print(f"rayeval sim-server: served {served} requests", flush=True)


class SimProcess:
    """A simulator running in a child process (see `start_in_subprocess`)."""

    def __init__(self, proc: subprocess.Popen[bytes], base_url: str, workdir: tempfile.TemporaryDirectory[str]):
        self._proc = proc
        self.base_url = base_url
        self._workdir = workdir

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def stats(self, timeout: float = 5.0) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.root_url}/stats", timeout=timeout) as response:
            return json.loads(response.read())

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, wait up to `timeout`, then SIGKILL; returns the exit code. Idempotent."""
        try:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            return self._proc.returncode
        finally:
            self._workdir.cleanup()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _tail(path: str, limit: int = 2000) -> str:
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - limit))
        return fh.read().decode(errors="replace").strip()
    return ""


async def _stop_when_orphaned(parent_pid: int, stop: asyncio.Event) -> None:
    while os.getppid() == parent_pid:
        await asyncio.sleep(1.0)
    stop.set()


def start_in_subprocess(
    env_id: str,
    env_args: dict[str, Any],
    sim_args: dict[str, Any],
    host: str = "127.0.0.1",
    timeout: float = 30.0,
) -> SimProcess:
    """Start the simulator in its own process (its own core) on a free port; wait until it serves.

    Raises RuntimeError, with the tail of the child's stderr, if the child exits or is not ready
    within `timeout` seconds (the child is killed in the latter case).
    """
    SimConfig.from_dict(sim_args)  # fail fast, in the caller, on bad options
    workdir = tempfile.TemporaryDirectory(prefix="rayeval-sim-")
    ready = os.path.join(workdir.name, "ready")
    stderr_path = os.path.join(workdir.name, "stderr")
    cmd = [
        sys.executable, "-m", "rayeval.runner.simulator",
        "--env", env_id,
        "--env-args", json.dumps(env_args),
        "--sim-args", json.dumps(sim_args),
        "--host", host,
        "--port", "0",
        "--ready-file", ready,
        "--parent-pid", str(os.getpid()),
    ]  # fmt: skip
    # Output goes to files, not pipes: nobody reads a pipe while the child runs, and a full pipe
    # would block it.
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(ready):
            with open(ready) as fh:
                return SimProcess(proc, fh.read().strip(), workdir)
        code = proc.poll()
        if code is not None:
            tail = _tail(stderr_path)
            workdir.cleanup()
            raise RuntimeError(f"simulator process exited with code {code} before serving:\n{tail}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            tail = _tail(stderr_path)
            workdir.cleanup()
            raise RuntimeError(f"simulator process not ready within {timeout:g} s:\n{tail}")
        time.sleep(0.02)


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m rayeval.runner.simulator",
        description="Serve a simulated OpenAI-compatible endpoint for an environment (a simulator, not a model).",
    )
    parser.add_argument("--env", default="gsm8k", help="environment id (default: gsm8k)")
    parser.add_argument("--env-args", default="{}", help="environment arguments as JSON")
    parser.add_argument("--sim-args", default="{}", help="simulator options as JSON, e.g. '{\"p_correct\": 0.5}'")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--ready-file", default=None, help="write the base URL here once serving")
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process is gone")
    args = parser.parse_args(argv)
    try:
        env_args, sim_args = json.loads(args.env_args), json.loads(args.sim_args)
    except ValueError as exc:
        parser.error(f"--env-args/--sim-args must be JSON: {exc}")
    serve_forever(args.env, env_args, sim_args, args.host, args.port, args.ready_file, args.parent_pid)


if __name__ == "__main__":
    _main()
