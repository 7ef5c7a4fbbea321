"""Liveness under process faults: a frozen server, a killed-and-restarted server, a frozen client.

The peers that freeze or die run in child processes (``python -c``), because
that is the only honest way to stop a process's I/O thread: SIGSTOP freezes
libzmq too, so no heartbeat is answered -- which is exactly what the
heartbeat options are for.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import pytest
import zmq

from rayeval.transport import Client, RequestTimeout
from _gated import gated_echo

# The server child: echoes its pid and body; sleeps first when told to sleep on *its* pid,
# so a restarted server answers the very same request at once.
_SERVER_CHILD = r"""
import asyncio, os, sys
from rayeval.transport import Server

async def handler(body):
    if isinstance(body, dict) and body.get("sleep_on") == os.getpid():
        await asyncio.sleep(60)
    return {"pid": os.getpid(), "body": body}

async def main():
    async with Server(handler, port=int(sys.argv[1])) as server:
        print(server.address, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""

# A raw DEALER client child with a fixed identity: sends one request, then a ping every
# 200 ms (any message makes the server redeliver kept replies) and prints what comes back.
_CLIENT_CHILD = r"""
import sys, zmq
from rayeval.transport import Envelope, decode, encode
sock = zmq.Context().socket(zmq.DEALER)
sock.setsockopt(zmq.ROUTING_ID, b"frozen-driver")
sock.setsockopt(zmq.LINGER, 0)
sock.connect(sys.argv[1])
sock.send(encode(Envelope("req", "r1", "hello")))
print("sent", flush=True)
n = 0
while True:
    if sock.poll(200):
        env = decode(sock.recv())
        print(env.kind, env.request_id, flush=True)
    else:
        n += 1
        sock.send(encode(Envelope("ping", f"p{n}", None)))
"""


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def spawn():
    """``await spawn(code, *args)`` -> (process, first stdout line). Every child is killed at teardown."""
    procs: list[asyncio.subprocess.Process] = []

    async def _spawn(code: str, *args: str) -> tuple[asyncio.subprocess.Process, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, *args, stdout=asyncio.subprocess.PIPE
        )
        procs.append(proc)
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode().strip()
        assert line, f"child exited early with {await proc.wait()}"
        return proc, line

    yield _spawn
    for proc in procs:
        if proc.returncode is None:
            try:
                os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot die until continued
                proc.kill()
            except ProcessLookupError:
                pass
            await proc.wait()


async def _until_alive(client: Client, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await client.alive(1.0):
        if loop.time() > deadline:
            pytest.fail(f"server did not answer a ping within {timeout}s")


async def test_ping_to_a_sigstopped_server_times_out_instead_of_hanging(spawn):
    proc, address = await spawn(_SERVER_CHILD, "0")
    async with Client(address, heartbeat_ivl=0.2, heartbeat_timeout=0.6) as client:
        assert await client.alive(10)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            async with asyncio.timeout(15):  # a hang fails here, not at the CI job timeout
                with pytest.raises(RequestTimeout):
                    await client.ping(timeout=1.0)
                assert not await client.alive(1.0)
                with pytest.raises(RequestTimeout):
                    await client.request("frozen", timeout=1.0)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        # Resumed: it answers again (the request above may still be answered late).
        await _until_alive(client, 15)
        reply = await client.request("back", timeout=10, resend_after=0.5)
        assert reply == {"pid": proc.pid, "body": "back"}


async def test_server_killed_and_restarted_on_the_same_port_answers_the_same_client(spawn):
    port = str(_unused_port())
    first, address = await spawn(_SERVER_CHILD, port)
    async with Client(address, heartbeat_ivl=0.2, heartbeat_timeout=0.6) as client:
        assert (await client.request("one", timeout=10))["pid"] == first.pid
        body = {"sleep_on": first.pid}
        # Both requests reach the first server, which dies holding them.
        resending = asyncio.create_task(client.request(body, timeout=30, resend_after=0.5))
        plain = asyncio.create_task(client.request(body, timeout=5))
        await asyncio.sleep(0.5)
        first.kill()
        await first.wait()
        assert not await client.alive(0.5)

        second, address2 = await spawn(_SERVER_CHILD, port)
        assert address2 == address
        await _until_alive(client, 15)  # same DEALER, reconnected on its own
        assert await resending == {"pid": second.pid, "body": body}
        assert client.stats.resends > 0
        # Without resend_after the request died with the first server: only its deadline ends it.
        with pytest.raises(RequestTimeout):
            await plain
        assert (await client.request("two", timeout=10))["pid"] == second.pid


@pytest.mark.parametrize("heartbeats", [True, False], ids=["heartbeats", "control-no-heartbeats"])
async def test_reply_to_a_sigstopped_client_is_kept_and_redelivered_when_it_resumes(
    start_server, spawn, wait_until, heartbeats
):
    handler, release = gated_echo()

    hb = {"heartbeat_ivl": 0.2, "heartbeat_timeout": 0.6} if heartbeats else {"heartbeat_ivl": None}
    server = await start_server(handler, **hb)
    proc, line = await spawn(_CLIENT_CHILD, server.address)
    assert line == "sent"
    await wait_until(lambda: server.stats.in_flight == 1, 10, "the child's request")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(2.0)  # > heartbeat timeout: the server drops the frozen peer's connection
        release.set()
        await wait_until(lambda: server.stats.replied + server.stats.unreachable >= 1, 5, "the reply attempt")
        stats = server.stats
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    if not heartbeats:
        # Without heartbeats the frozen peer's TCP buffer takes the reply and the send
        # "succeeds": were the peer dead, not stopped, that reply would be gone.
        assert stats.unreachable == 0 and stats.kept == 0
        return
    assert stats.unreachable == 1 and stats.kept == 1
    # Resumed, the child reconnects and pings; its next message triggers the redelivery.
    async with asyncio.timeout(15):
        while (await proc.stdout.readline()).decode().split() != ["rep", "r1"]:
            pass
    assert server.stats.redelivered == 1 and server.stats.kept == 0


async def test_heartbeat_options_reach_the_sockets(start_server, connect):
    async def echo(body):
        return body

    server = await start_server(echo, heartbeat_ivl=0.5, heartbeat_timeout=2.0)
    assert server._sock.getsockopt(zmq.HEARTBEAT_IVL) == 500
    assert server._sock.getsockopt(zmq.HEARTBEAT_TIMEOUT) == 2000
    client = await connect(server.address, heartbeat_ivl=0.25, heartbeat_timeout=1.0, heartbeat_ttl=0.05)
    assert client._sock.getsockopt(zmq.HEARTBEAT_IVL) == 250
    assert client._sock.getsockopt(zmq.HEARTBEAT_TIMEOUT) == 1000
    assert client._sock.getsockopt(zmq.HEARTBEAT_TTL) == 100  # rounded up to libzmq's 0.1 s unit
    off = await connect(server.address, heartbeat_ivl=None, heartbeat_ttl=None)
    assert off._sock.getsockopt(zmq.HEARTBEAT_IVL) == 0 and off._sock.getsockopt(zmq.HEARTBEAT_TTL) == 0
