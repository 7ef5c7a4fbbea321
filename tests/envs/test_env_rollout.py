"""A rollout through the real openai client against a tiny local chat-completions server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from rayeval.envs import GSM8K, RolloutError

DATA = (Path(__file__).resolve().parents[2] / "../shared/data/gsm8k").resolve()


@dataclass
class FakeServer:
    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    reply: Callable[[dict[str, Any]], web.Response] | None = None


def completion_json(content: str | None, usage: bool = True, choices: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1,
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ]
        if choices
        else [],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    return body


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    state = FakeServer(base_url="")

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        state.requests.append(body)
        state.headers.append({k.lower(): v for k, v in request.headers.items()})
        if state.reply is not None:
            return state.reply(body)
        return web.json_response(completion_json("16-3-4=9 eggs, 9*2 = 18.\n\\boxed{18}"))

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.base_url = f"http://127.0.0.1:{port}/v1"
    yield state
    await runner.cleanup()


@pytest.fixture
async def client(server: FakeServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="x", max_retries=0, http_client=openai.DefaultAioHttpClient()
    ) as c:
        yield c


@pytest.fixture(scope="module")
def env() -> GSM8K:
    return GSM8K(data_path=str(DATA))


async def test_rollout_returns_scored_completion_with_usage(
    env: GSM8K, server: FakeServer, client: openai.AsyncOpenAI
) -> None:
    out = await env.rollout(
        client,
        "test-model",
        0,
        {"temperature": 0.6, "max_tokens": 64, "top_k": 20, "min_p": 0.05},
        extra_headers={"X-Rollout": "0-0"},
        timeout=10,
    )
    assert out.completion.endswith("\\boxed{18}")
    assert out.reward == 1.0
    assert out.metrics == {"strict": 0.0, "flexible": 1.0, "boxed": 1.0}
    assert out.usage == {"prompt_tokens": 11, "completion_tokens": 7}
    assert out.finish_reason == "stop"

    (body,) = server.requests
    assert body["model"] == "test-model"
    assert body["messages"] == env.row(0).prompt
    assert body["temperature"] == 0.6 and body["max_tokens"] == 64
    assert body["top_k"] == 20 and body["min_p"] == 0.05  # non-SDK args travel in the body
    assert server.headers[0]["x-rollout"] == "0-0"


async def test_null_content_and_missing_usage(env: GSM8K, server: FakeServer, client: openai.AsyncOpenAI) -> None:
    server.reply = lambda body: web.json_response(completion_json(None, usage=False))
    out = await env.rollout(client, "test-model", 5, {})
    assert out.completion == "" and out.reward == 0.0 and out.usage is None
    assert server.requests[0]["messages"] == env.row(5).prompt


async def test_client_errors_propagate_unchanged(env: GSM8K, server: FakeServer, client: openai.AsyncOpenAI) -> None:
    server.reply = lambda body: web.json_response({"error": {"message": "boom"}}, status=500)
    with pytest.raises(openai.InternalServerError):
        await env.rollout(client, "test-model", 0, {})


async def test_empty_choices_raise_rollout_error(env: GSM8K, server: FakeServer, client: openai.AsyncOpenAI) -> None:
    server.reply = lambda body: web.json_response(completion_json("x", choices=False))
    with pytest.raises(RolloutError, match="no choices"):
        await env.rollout(client, "test-model", 0, {})


async def test_bad_example_id_and_reserved_sampling_args_fail_before_any_request(
    env: GSM8K, server: FakeServer, client: openai.AsyncOpenAI
) -> None:
    with pytest.raises(IndexError):
        await env.rollout(client, "test-model", 10_000, {})
    with pytest.raises(ValueError, match="'stream'"):
        await env.rollout(client, "test-model", 0, {"stream": True})
    assert server.requests == []


def test_completion_json_is_valid_openai_shape() -> None:
    parsed = openai.types.chat.ChatCompletion.model_validate(json.loads(json.dumps(completion_json("hi"))))
    assert parsed.choices[0].message.content == "hi"
