"""rayeval.runner.simulator over real HTTP: the openai client against the simulator, no mocks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import aiohttp
import openai
import pytest

from rayeval.envs import load_environment
from rayeval.runner.simulator import SimConfig, SimServer, start_in_subprocess

GSM8K_ARGS = {"data_path": os.path.join(os.path.dirname(__file__), "../../../shared/data/gsm8k")}
BOXED = re.compile(r"\\boxed\{([^}]*)\}")


@pytest.fixture(scope="module")
def env():
    return load_environment("gsm8k", GSM8K_ARGS)


def client_for(base_url: str, **kwargs) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="sim", http_client=openai.DefaultAioHttpClient(), **kwargs)


async def ask(client: openai.AsyncOpenAI, row, rollout_idx: int) -> str:
    reply = await client.chat.completions.create(
        model="sim-model",
        messages=row.prompt,
        extra_headers={"X-Rayeval-Rollout-Idx": str(rollout_idx), "X-Rayeval-Example-Id": str(row.example_id)},
    )
    return reply.choices[0].message.content


def boxed(content: str) -> str:
    match = BOXED.search(content)
    assert match, content
    return match.group(1)


def same_number(a: str, b: str) -> bool:
    return float(a.replace(",", "")) == float(b.replace(",", ""))


async def test_reply_is_a_valid_chat_completion_with_the_gold_answer(env):
    row = env.rows[0]
    async with SimServer(env, SimConfig(p_correct=1.0)) as server:
        client = client_for(server.base_url)
        async with client:
            reply = await client.chat.completions.create(
                model="sim-model", messages=row.prompt, extra_headers={"X-Rayeval-Rollout-Idx": "0"}
            )
    assert reply.object == "chat.completion"
    assert reply.model == "sim-model"
    assert reply.choices[0].index == 0
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.role == "assistant"
    assert f"\\boxed{{{row.answer}}}" in reply.choices[0].message.content
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0


async def test_wrong_replies_never_equal_the_gold_answer(env):
    rows = env.rows[:200]
    async with SimServer(env, SimConfig(p_correct=0.0)) as server:
        async with client_for(server.base_url) as client:
            contents = await asyncio.gather(*(ask(client, row, 0) for row in rows))
    for row, content in zip(rows, contents):
        assert not same_number(boxed(content), row.answer), (row.answer, content)


async def test_fraction_correct_tracks_p_correct_over_2000_pairs(env):
    pairs = [(row, r) for row in env.rows[:500] for r in range(4)]
    limit = asyncio.Semaphore(64)

    async def one(client, row, r):
        async with limit:
            return same_number(boxed(await ask(client, row, r)), row.answer)

    async with SimServer(env, SimConfig(p_correct=0.7, seed=3)) as server:
        async with client_for(server.base_url) as client:
            correct = await asyncio.gather(*(one(client, row, r) for row, r in pairs))
        assert server.stats["requests"] == 2000
        assert server.stats["example_id_mismatches"] == 0
    assert 0.65 <= sum(correct) / len(correct) <= 0.75


async def test_same_seed_example_and_rollout_give_the_same_reply_and_seeds_differ(env):
    pairs = [(row, r) for row in env.rows[:20] for r in range(3)]
    replies = {}
    for seed in (0, 0, 1):
        async with SimServer(env, SimConfig(seed=seed)) as server:
            async with client_for(server.base_url) as client:
                replies.setdefault(seed, []).append([await ask(client, row, r) for row, r in pairs])
    first, again = replies[0]
    assert first == again
    assert replies[1][0] != first
    # Within one server the rollout index, not arrival order, decides: ask again in reverse.
    async with SimServer(env, SimConfig(seed=0)) as server:
        async with client_for(server.base_url) as client:
            backwards = [await ask(client, row, r) for row, r in reversed(pairs)]
    assert backwards[::-1] == first


async def test_stats_count_exactly_the_requests_made(env):
    async with SimServer(env, SimConfig()) as server:
        async with client_for(server.base_url) as client:
            for i in range(7):
                await ask(client, env.rows[i], i)
            models = await client.models.list()
        assert [m.id for m in models.data]
        async with aiohttp.ClientSession() as session:
            async with session.get(server.base_url.removesuffix("/v1") + "/stats") as response:
                stats = await response.json()
            async with session.get(server.base_url.removesuffix("/v1") + "/health") as response:
                assert response.status == 200
        assert stats == {"requests": 7, "by_status": {"200": 7}, "example_id_mismatches": 0}
        assert server.stats == stats


async def test_unknown_question_is_still_answered_with_a_number(env):
    async with SimServer(env, SimConfig(p_correct=1.0)) as server:
        async with client_for(server.base_url) as client:
            reply = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "What is the airspeed of an unladen swallow?"}]
            )
    float(boxed(reply.choices[0].message.content))


async def test_example_id_header_disagreeing_with_the_prompt_is_counted(env):
    async with SimServer(env, SimConfig()) as server:
        async with aiohttp.ClientSession() as session:
            body = {"model": "m", "messages": env.rows[5].prompt}
            headers = {"X-Rayeval-Example-Id": "6", "X-Rayeval-Rollout-Idx": "0"}
            async with session.post(server.base_url + "/chat/completions", json=body, headers=headers) as response:
                assert response.status == 200
        assert server.stats["example_id_mismatches"] == 1


@pytest.mark.parametrize(
    "options, key",
    [
        ({"p_correct": 0.5, "temperature": 1.0}, "temperature"),
        ({"p_correct": "high"}, "p_correct"),
        ({"seed": 1.5}, "seed"),
        ({"latency_ms": True}, "latency_ms"),
        ({"p_correct": 1.5}, "p_correct"),
        ({"fail_rate": -0.1}, "fail_rate"),
    ],
)
def test_bad_simulator_options_raise_value_error_naming_the_key(options, key):
    with pytest.raises(ValueError, match=key):
        SimConfig.from_dict(options)


def test_config_from_dict_accepts_ints_for_floats():
    config = SimConfig.from_dict({"p_correct": 1, "latency_ms": 2, "seed": 9})
    assert config == SimConfig(p_correct=1.0, latency_ms=2.0, seed=9)


async def post_status(session, url, row, rollout_idx):
    body = {"model": "m", "messages": row.prompt}
    headers = {"X-Rayeval-Rollout-Idx": str(rollout_idx)}
    async with session.post(url + "/chat/completions", json=body, headers=headers) as response:
        await response.read()
        return response.status, response.headers.get("Retry-After")


async def test_injected_faults_are_deterministic_and_a_retry_can_succeed(env):
    config = SimConfig(fail_rate=0.3, rate_limit_rate=0.3, retry_after_s=0.5)
    histories = []
    for _ in range(2):
        async with SimServer(env, config) as server:
            async with aiohttp.ClientSession() as session:
                history = []
                for row in env.rows[:10]:
                    statuses = []
                    for _attempt in range(20):  # retry until success, like a client would
                        status, retry_after = await post_status(session, server.base_url, row, 0)
                        statuses.append(status)
                        if status == 429:
                            assert retry_after == "0.5"
                        if status == 200:
                            break
                    history.append(statuses)
            assert server.stats["by_status"].get("200") == 10
        histories.append(history)
    assert histories[0] == histories[1]
    flat = [s for statuses in histories[0] for s in statuses]
    assert {500, 429, 200} <= set(flat)


async def test_hung_requests_never_answer_and_stop_releases_them(env):
    server = SimServer(env, SimConfig(hang_rate=1.0))
    await server.start()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(post_status(session, server.base_url, env.rows[0], 0), 0.3)
    assert server.stats["by_status"] == {"hang": 1}
    await asyncio.wait_for(server.stop(), 5)


async def test_openai_client_sees_server_errors_as_its_own_exceptions(env):
    async with SimServer(env, SimConfig(fail_rate=1.0)) as server:
        async with client_for(server.base_url, max_retries=0) as client:
            with pytest.raises(openai.InternalServerError):
                await ask(client, env.rows[0], 0)


def test_start_in_subprocess_serves_and_stop_leaves_no_process():
    sim = start_in_subprocess("gsm8k", GSM8K_ARGS, {"p_correct": 1.0, "seed": 4})
    try:
        env = load_environment("gsm8k", GSM8K_ARGS)
        row = env.rows[1]
        request = urllib.request.Request(
            sim.base_url + "/chat/completions",
            data=json.dumps({"model": "m", "messages": row.prompt}).encode(),
            headers={"Content-Type": "application/json", "X-Rayeval-Rollout-Idx": "0"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            content = json.loads(response.read())["choices"][0]["message"]["content"]
        assert f"\\boxed{{{row.answer}}}" in content
        assert sim.stats() == {"requests": 1, "by_status": {"200": 1}, "example_id_mismatches": 0}
    finally:
        code = sim.stop()
    assert code == 0  # SIGTERM is a graceful stop
    with pytest.raises(ProcessLookupError):
        os.kill(sim.pid, 0)


def test_start_in_subprocess_reports_a_failing_child():
    with pytest.raises(RuntimeError, match="exited with code"):
        start_in_subprocess("no-such-environment", {}, {}, timeout=30)


def test_start_in_subprocess_rejects_bad_options_before_starting():
    with pytest.raises(ValueError, match="colour"):
        start_in_subprocess("gsm8k", GSM8K_ARGS, {"colour": "blue"})


def test_module_entry_prints_its_banner_and_final_count(tmp_path):
    ready = tmp_path / "ready"
    cmd = [sys.executable, "-m", "rayeval.runner.simulator", "--env", "gsm8k", "--env-args", json.dumps(GSM8K_ARGS),
           "--port", "0", "--ready-file", str(ready)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        base_url = ready.read_text().strip()
        with urllib.request.urlopen(base_url.removesuffix("/v1") + "/health", timeout=10) as response:
            assert response.read() == b"ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out.splitlines() == [
        f"rayeval sim-server: serving gsm8k (1319 examples) at {base_url} (a simulator, not a model)",
        "rayeval sim-server: served 0 requests",
    ]
