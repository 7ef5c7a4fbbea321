"""Fixtures for the transport tests: real sockets on tcp://127.0.0.1, no mocks.

``raw_dealer`` gives a bare pyzmq DEALER so a test can play a peer that our
Client would never be (one that does not read, sends garbage, or reconnects
with a chosen identity). Every socket/server/client made through a fixture is
closed at teardown even when the test fails.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest
import zmq
import zmq.asyncio

from rayeval.transport import Client, Envelope, Server, decode, encode
from rayeval.transport.protocol import REQUEST


@pytest.fixture
async def start_server():
    servers: list[Server] = []

    async def _start(handler: Callable[[Any], Awaitable[Any]], **kwargs: Any) -> Server:
        server = Server(handler, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        await server.close()


@pytest.fixture
async def connect():
    clients: list[Client] = []

    async def _connect(address: str, **kwargs: Any) -> Client:
        client = Client(address, **kwargs)
        await client.start()
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        await client.close()


@pytest.fixture
async def raw_dealer():
    ctx = zmq.asyncio.Context.instance()
    socks: list[zmq.asyncio.Socket] = []

    def _make(address: str, *, hwm: int = 0, identity: bytes | None = None) -> zmq.asyncio.Socket:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
        sock.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            sock.setsockopt(zmq.ROUTING_ID, identity)
        sock.connect(address)
        socks.append(sock)
        return sock

    yield _make
    for sock in socks:
        sock.close(linger=0)


def request_frame(request_id: str, body: Any = None) -> bytes:
    return encode(Envelope(REQUEST, request_id, body))


@pytest.fixture
def req():
    """``req(request_id, body)`` -> the one frame a DEALER sends for a request."""
    return request_frame


async def _collect(sock: zmq.asyncio.Socket, count: int, timeout: float) -> list[Envelope]:
    """Read until ``count`` envelopes arrived or ``timeout`` passed; return what arrived."""
    got: list[Envelope] = []
    try:
        async with asyncio.timeout(timeout):
            while len(got) < count:
                got.append(decode(await sock.recv()))
    except TimeoutError:
        pass
    return got


@pytest.fixture
def collect():
    return _collect


async def _wait_until(predicate: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    """Poll ``predicate`` every few ms; fail the test if it is not true within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


@pytest.fixture
def wait_until():
    return _wait_until
