"""Request/reply behaviour of Client and Server over real sockets."""

from __future__ import annotations

import asyncio
import random
import socket

import msgpack
import pytest
import zmq

from _gated import gated_echo
from rayeval.transport import (
    Client,
    RemoteError,
    RequestTimeout,
    Server,
    TransportClosed,
    TransportError,
)


async def echo(body):
    return body


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Flaky(Exception):
    retryable = True


async def test_handler_exception_becomes_remote_error_with_kind_message_and_retryable(start_server, connect):
    async def handler(body):
        if body == "value":
            raise ValueError("no such thing")
        if body == "flaky":
            raise Flaky("try again")
        return body

    server = await start_server(handler)
    client = await connect(server.address)
    with pytest.raises(RemoteError) as info:
        await client.request("value")
    assert (info.value.kind, info.value.message, info.value.retryable) == ("ValueError", "no such thing", False)
    with pytest.raises(RemoteError) as info:
        await client.request("flaky")
    assert (info.value.kind, info.value.retryable) == ("Flaky", True)
    assert await client.request("fine") == "fine"  # the server is unharmed
    assert server.stats.errors == 2


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no")

    @property
    def retryable(self):
        raise RuntimeError("no")


async def test_an_exception_that_cannot_describe_itself_still_gets_an_error_reply(start_server, connect):
    async def handler(body):
        raise Unprintable()

    server = await start_server(handler)
    client = await connect(server.address, default_timeout=2)
    with pytest.raises(RemoteError) as info:
        await client.request(1)
    assert info.value.kind == "Unprintable" and info.value.retryable is False


async def test_unencodable_reply_becomes_a_remote_protocol_error(start_server, connect):
    async def handler(body):
        return object()

    server = await start_server(handler)
    client = await connect(server.address)
    with pytest.raises(RemoteError) as info:
        await client.request(1)
    assert info.value.kind == "ProtocolError"


async def test_request_timeout_raises_and_removes_its_pending_entry(start_server, connect, wait_until):
    handler, release = gated_echo()

    server = await start_server(handler)
    client = await connect(server.address)
    with pytest.raises(RequestTimeout) as info:
        await client.request("slow", timeout=0.1)
    assert info.value.timeout == 0.1
    assert client.outstanding == 0
    assert client.stats.timeouts == 1
    # The late reply is counted and dropped, not delivered anywhere.
    release.set()
    await wait_until(lambda: client.stats.late == 1, 2, "the late reply")
    assert client.outstanding == 0


async def test_default_timeout_applies_when_none_given(start_server, connect):
    async def handler(body):
        await asyncio.sleep(10)

    server = await start_server(handler)
    client = await connect(server.address, default_timeout=0.1)
    with pytest.raises(RequestTimeout):
        await client.request(1)


async def test_close_fails_every_pending_request_with_transport_closed(start_server, wait_until):
    async def handler(body):
        await asyncio.Event().wait()  # never answers

    server = await start_server(handler)
    client = Client(server.address)
    tasks = [asyncio.create_task(client.request(i)) for i in range(50)]
    await wait_until(lambda: server.stats.received == 50, 5, "requests to reach the server")
    assert client.outstanding == 50
    await client.close()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, TransportClosed) for r in results), results
    assert client.outstanding == 0
    with pytest.raises(TransportClosed):
        await client.request("after close")
    with pytest.raises(TransportClosed):
        await client.ping()
    await client.close()  # idempotent


async def test_close_during_a_blocked_send_raises_transport_closed_not_cancelled():
    # Nothing listens on the port: a DEALER with HWM 1 queues one message and
    # then blocks in send. close() must surface as TransportClosed.
    client = Client(f"tcp://127.0.0.1:{_unused_port()}", hwm=1, default_timeout=10)
    tasks = [asyncio.create_task(client.request(i)) for i in range(5)]
    await asyncio.sleep(0.1)
    await client.close()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, TransportClosed) for r in results), results


async def test_timeout_covers_a_send_that_cannot_go_out():
    client = Client(f"tcp://127.0.0.1:{_unused_port()}", hwm=1)
    try:
        await client.start()
        await asyncio.gather(*(client.request(i, timeout=0.1) for i in range(3)), return_exceptions=True)
        with pytest.raises(RequestTimeout):
            await client.request("blocked", timeout=0.1)
        assert client.outstanding == 0
    finally:
        await client.close()


async def test_cancelling_a_request_removes_its_pending_entry(start_server, connect, wait_until):
    async def handler(body):
        await asyncio.sleep(10)

    server = await start_server(handler)
    client = await connect(server.address)
    task = asyncio.create_task(client.request(1))
    await wait_until(lambda: server.stats.received == 1, 2, "the request")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.outstanding == 0


async def test_5000_concurrent_requests_from_one_client(start_server, connect):
    async def handler(body):
        await asyncio.sleep(random.random() * 0.05)  # finish out of order
        return {"echo": body}

    server = await start_server(handler)
    client = await connect(server.address, default_timeout=30)
    async with asyncio.timeout(30):
        replies = await asyncio.gather(*(client.request(i) for i in range(5000)))
    assert [r["echo"] for r in replies] == list(range(5000))
    assert client.outstanding == 0 and server.stats.in_flight == 0


async def test_explicit_request_ids_are_echoed_and_must_be_unique(start_server, connect):
    handler, release = gated_echo()

    server = await start_server(handler)
    client = await connect(server.address)
    first = asyncio.create_task(client.request("a", request_id="job-1"))
    await asyncio.sleep(0.05)
    with pytest.raises(ValueError):
        await client.request("b", request_id="job-1")
    release.set()
    assert await first == "a"


async def test_ping_round_trips_even_while_every_handler_is_busy(start_server, connect, wait_until):
    handler, release = gated_echo()

    server = await start_server(handler)
    client = await connect(server.address)
    busy = [asyncio.create_task(client.request(i)) for i in range(20)]
    await wait_until(lambda: server.stats.in_flight == 20, 2, "busy handlers")
    rtt = await client.ping(timeout=2)
    assert 0 < rtt < 2
    assert server.stats.pings == 1
    release.set()
    assert await asyncio.gather(*busy) == list(range(20))


async def test_malformed_frames_do_not_crash_the_server(start_server, raw_dealer, req, collect):
    server = await start_server(echo)
    peer = raw_dealer(server.address)
    await peer.send(b"\xc1 not msgpack")  # unreadable: dropped
    await peer.send(b"")  # empty frame: dropped
    await peer.send(msgpack.packb({"not": "an envelope"}))  # no id: dropped
    await peer.send_multipart([req("two-frames", 1), b"extra"])  # wrong frame count, id readable
    await peer.send(msgpack.packb([99, "req", "future-version", None]))  # unknown version
    await peer.send(msgpack.packb([1, "bogus", "bad-kind", None]))  # unknown kind
    await peer.send(msgpack.packb([1, "rep", "wrong-direction", None]))  # a reply sent to a server
    await peer.send(req("fine", {"still": "served"}))
    got = await collect(peer, 5, timeout=3)
    by_id = {env.request_id: env for env in got}
    assert set(by_id) == {"two-frames", "future-version", "bad-kind", "wrong-direction", "fine"}
    for rid in ("two-frames", "future-version", "bad-kind", "wrong-direction"):
        assert by_id[rid].kind == "err" and by_id[rid].body["kind"] == "ProtocolError"
        assert by_id[rid].body["retryable"] is False
    assert by_id["fine"].kind == "rep" and by_id["fine"].body == {"still": "served"}
    stats = server.stats
    assert stats.malformed == 7 and stats.received == 1
    # and our own client still gets served by the same server
    async with Client(server.address) as client:
        assert await client.request("ok") == "ok"


async def test_oversized_message_is_refused_without_killing_the_server(start_server, raw_dealer, req, connect):
    server = await start_server(echo, max_message_size=1024)
    big = raw_dealer(server.address)
    await big.send(req("huge", b"x" * 4096))  # libzmq drops this peer's connection
    await asyncio.sleep(0.1)
    client = await connect(server.address)
    assert await client.request("small") == "small"
    assert server.stats.received == 1


async def test_reply_to_a_disconnected_peer_is_kept_and_redelivered_on_reconnect(
    start_server, raw_dealer, req, collect, wait_until
):
    release = asyncio.Event()

    async def handler(body):
        await release.wait()
        return {"done": body}

    server = await start_server(handler)
    first = raw_dealer(server.address, identity=b"peer-1")
    await first.send(req("r1", 1))
    await wait_until(lambda: server.stats.in_flight == 1, 2, "the request")
    first.close(linger=0)
    await asyncio.sleep(0.3)  # libzmq needs ~50 ms to notice the disconnect
    release.set()
    await wait_until(lambda: server.stats.unreachable == 1, 2, "EHOSTUNREACH")
    assert server.stats.kept == 1

    # Same identity comes back; any message from it triggers redelivery, before that message is handled.
    second = raw_dealer(server.address, identity=b"peer-1")
    await second.send(req("r2", 2))
    got = await collect(second, 2, timeout=3)
    assert [env.request_id for env in got] == ["r1", "r2"]
    assert got[0].body == {"done": 1}
    stats = server.stats
    assert stats.kept == 0 and stats.redelivered == 1


async def test_redelivered_reply_for_a_previous_client_is_counted_late_not_misdelivered(
    start_server, wait_until
):
    handler, release = gated_echo()

    server = await start_server(handler)
    old = Client(server.address, identity=b"driver-7")
    pending = asyncio.create_task(old.request("from old"))
    await wait_until(lambda: server.stats.in_flight == 1, 2, "the request")
    await old.close()
    with pytest.raises(TransportClosed):
        await pending
    await asyncio.sleep(0.3)
    release.set()
    await wait_until(lambda: server.stats.kept == 1, 2, "the kept reply")

    async with Client(server.address, identity=b"driver-7") as new:
        await new.ping(timeout=2)  # any message redelivers; the old reply is not ours
        await wait_until(lambda: new.stats.late == 1, 2, "the redelivered reply")
        assert await new.request("mine") == "mine"
    assert server.stats.redelivered == 1


async def test_server_close_cancels_in_flight_handlers(start_server, connect, wait_until):
    cancelled = []

    async def handler(body):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(body)
            raise

    server = Server(handler)
    await server.start()
    async with Client(server.address, default_timeout=5) as client:
        tasks = [asyncio.create_task(client.request(i)) for i in range(3)]
        await wait_until(lambda: server.stats.in_flight == 3, 2, "handlers to start")
        await server.close()
        assert sorted(cancelled) == [0, 1, 2]
        assert server.stats.in_flight == 0
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_server_lifecycle_refuses_misuse():
    server = Server(echo)
    with pytest.raises(RuntimeError):
        server.address
    assert server.state == "created"
    address = await server.start()
    assert address.startswith("tcp://127.0.0.1:") and server.address == address
    assert server.state == "serving"
    with pytest.raises(RuntimeError, match="already started"):
        await server.start()
    await server.close()
    await server.close()  # idempotent
    assert server.state == "closed"
    with pytest.raises(TransportClosed):
        await server.start()


async def test_binding_a_taken_port_is_a_transport_error(start_server):
    first = await start_server(echo)
    port = int(first.address.rsplit(":", 1)[1])
    with pytest.raises(TransportError) as info:
        await Server(echo, port=port).start()
    assert isinstance(info.value.__cause__, zmq.ZMQError)  # translated, cause kept


def test_client_rejects_reserved_identities():
    with pytest.raises(ValueError):
        Client("tcp://127.0.0.1:1", identity=b"\x00abc")
    with pytest.raises(ValueError):
        Client("tcp://127.0.0.1:1", identity=b"")
