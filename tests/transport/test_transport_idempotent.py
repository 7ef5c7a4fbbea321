"""A resent request id never runs the handler twice; the client can resend and give up on requests."""

from __future__ import annotations

import asyncio

import pytest
import zmq
import zmq.asyncio

from rayeval.transport import Client, RemoteError, RequestAbandoned, decode, encode
from rayeval.transport._results import ResultCache
from rayeval.transport.protocol import REPLY, Envelope


class Counting:
    """Handler that records every call and blocks until released."""

    def __init__(self, *, blocked: bool = False) -> None:
        self.calls: list = []
        self.release = asyncio.Event()
        if not blocked:
            self.release.set()

    async def __call__(self, body):
        self.calls.append(body)
        await self.release.wait()
        return {"ran": body, "n": len(self.calls)}


# ----------------------------------------------------------------- ResultCache alone
def test_cache_count_bound_evicts_oldest_first():
    cache = ResultCache(max_count=2, max_bytes=1000, max_age=60)
    for i in range(4):
        cache.put(f"r{i}", b"x", now=float(i))
    assert len(cache) == 2 and cache.evicted == 2
    assert cache.get("r0", now=4) is None and cache.get("r1", now=4) is None
    assert cache.get("r3", now=4) == b"x"


def test_cache_byte_bound_and_oversized_entry():
    cache = ResultCache(max_count=100, max_bytes=100, max_age=60)
    cache.put("a", b"x" * 60, now=0)
    cache.put("b", b"x" * 50, now=1)  # 110 bytes: "a" goes
    assert cache.get("a", now=1) is None and cache.nbytes == 50
    cache.put("huge", b"x" * 500, now=2)  # larger than the bound on its own: everything goes
    assert len(cache) == 0 and cache.nbytes == 0 and cache.evicted == 3


def test_cache_age_bound_and_replacing_an_entry_keeps_bytes_exact():
    cache = ResultCache(max_count=100, max_bytes=1000, max_age=10)
    cache.put("old", b"xx", now=0)
    cache.put("new", b"xxx", now=5)
    cache.put("new", b"x", now=6)  # replaced, not added
    assert cache.nbytes == 3 and len(cache) == 2
    assert cache.get("old", now=11) is None and cache.get("new", now=11) == b"x"
    assert cache.evicted == 1


def test_cache_with_max_count_zero_keeps_nothing():
    cache = ResultCache(max_count=0, max_bytes=1000, max_age=60)
    cache.put("a", b"x", now=0)
    assert cache.get("a", now=0) is None and len(cache) == 0


# ----------------------------------------------------------------- server dedup
async def test_resent_id_after_completion_gets_the_cached_reply_without_rerunning(start_server, connect):
    handler = Counting()
    server = await start_server(handler)
    client = await connect(server.address)
    first = await client.request("a", request_id="job-1")
    again = await client.request("b", request_id="job-1")  # a resend: the body is not looked at
    assert first == again == {"ran": "a", "n": 1}
    assert handler.calls == ["a"]
    stats = server.stats
    assert stats.duplicates == 1 and stats.received == 2 and stats.cached == 1
    assert await client.request("c", request_id="job-2") == {"ran": "c", "n": 2}


async def test_resent_id_while_running_joins_the_run_and_every_ask_is_answered(
    start_server, connect, raw_dealer, req, collect, wait_until
):
    handler = Counting(blocked=True)
    server = await start_server(handler)
    one = await connect(server.address)
    two = await connect(server.address)
    peer = raw_dealer(server.address)
    a = asyncio.create_task(one.request("x", request_id="job-1"))
    await wait_until(lambda: server.stats.in_flight == 1, 2, "the first ask")
    b = asyncio.create_task(two.request("x", request_id="job-1"))
    await peer.send(req("job-1", "x"))
    await peer.send(req("job-1", "x"))  # the same identity twice: one reply per ask
    await wait_until(lambda: server.stats.duplicates == 3, 2, "three duplicates")
    assert server.stats.in_flight == 1
    handler.release.set()
    assert await a == await b == {"ran": "x", "n": 1}
    got = await collect(peer, 2, timeout=3)
    assert [(e.kind, e.request_id, e.body) for e in got] == [(REPLY, "job-1", {"ran": "x", "n": 1})] * 2
    assert handler.calls == ["x"]


async def test_retryable_errors_run_again_other_errors_are_cached(start_server, connect):
    calls = []

    class Busy(Exception):
        retryable = True

    async def handler(body):
        calls.append(body)
        if body == "busy" and calls.count("busy") == 1:
            raise Busy("try again")
        if body == "bad":
            raise ValueError("never works")
        return "ok"

    server = await start_server(handler)
    client = await connect(server.address)
    with pytest.raises(RemoteError) as info:
        await client.request("busy", request_id="r-busy")
    assert info.value.retryable
    assert await client.request("busy", request_id="r-busy") == "ok"  # ran again
    for _ in range(2):
        with pytest.raises(RemoteError, match="never works"):
            await client.request("bad", request_id="r-bad")
    assert calls == ["busy", "busy", "bad"]
    assert server.stats.duplicates == 1


async def test_evicted_ids_run_again(start_server, connect):
    handler = Counting()
    server = await start_server(handler, max_results=2)
    client = await connect(server.address)
    for i in range(4):
        await client.request(i, request_id=f"j{i}")
    assert server.stats.cached == 2 and server.stats.cache_evicted == 2
    await client.request(3, request_id="j3")  # still cached
    await client.request(0, request_id="j0")  # evicted: runs again
    assert handler.calls == [0, 1, 2, 3, 0]


# ----------------------------------------------------------------- client: give up, resend
async def test_fail_pending_fails_every_request_keeps_the_client_and_counts_late_replies(
    start_server, connect, wait_until
):
    handler = Counting(blocked=True)
    server = await start_server(handler)
    client = await connect(server.address)
    tasks = [asyncio.create_task(client.request(i)) for i in range(10)]
    await wait_until(lambda: server.stats.in_flight == 10, 2, "ten requests")
    assert client.fail_pending() == 10
    async with asyncio.timeout(5):
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RequestAbandoned) and r.request_id for r in results), results
    assert client.outstanding == 0 and client.stats.abandoned == 10

    class ServerDead(Exception):
        pass

    more = [asyncio.create_task(client.request(i, request_id=f"m{i}")) for i in range(3)]
    await wait_until(lambda: server.stats.in_flight == 13, 2, "three more")
    assert client.fail_pending(lambda rid: ServerDead(rid)) == 3
    async with asyncio.timeout(5):
        failed = await asyncio.gather(*more, return_exceptions=True)
    assert sorted(str(e) for e in failed) == ["m0", "m1", "m2"]

    handler.release.set()
    await wait_until(lambda: client.stats.late == 13, 3, "the late replies")
    assert client.stats.replies == 0
    assert await client.request("still works") == {"ran": "still works", "n": 14}
    assert await client.alive(2)


async def test_resend_after_sends_the_same_id_again_until_answered():
    # A fake server that "loses" the first copy: exactly the lost-reply window.
    ctx = zmq.asyncio.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind("tcp://127.0.0.1:*")
    seen: list[str] = []

    async def fake_server():
        while True:
            identity, payload = await router.recv_multipart()
            env = decode(payload)
            seen.append(env.request_id)
            if len(seen) == 2:
                await router.send_multipart([identity, encode(Envelope(REPLY, env.request_id, "answered"))])

    task = asyncio.create_task(fake_server())
    client = Client(router.getsockopt(zmq.LAST_ENDPOINT).decode())
    try:
        assert await client.request("x", timeout=10, resend_after=0.1) == "answered"
        assert len(seen) == 2 and seen[0] == seen[1]
        assert client.stats.resends == 1 and client.stats.sent == 2
        with pytest.raises(ValueError):
            await client.request("x", resend_after=0)
    finally:
        await client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        router.close(linger=0)


async def test_resend_after_against_a_slow_handler_runs_it_once(start_server, connect, wait_until):
    async def slow(body):
        calls.append(body)
        await asyncio.sleep(0.4)
        return body

    calls: list = []
    server = await start_server(slow)
    client = await connect(server.address)
    assert await client.request("once", timeout=10, resend_after=0.05) == "once"
    resends = client.stats.resends
    assert resends >= 2 and calls == ["once"]
    # The last resend may still be on its way: it then meets the cached reply. Either
    # way every ask is a duplicate with its own reply, all but the first dropped as late.
    await wait_until(lambda: server.stats.duplicates == resends, 3, "every resend at the server")
    await wait_until(lambda: client.stats.late == resends, 3, "the extra replies")
    assert calls == ["once"]


# ----------------------------------------------------------------- reconnect with the same identity
async def test_reconnected_client_resending_the_id_gets_the_kept_reply_handler_runs_once(
    start_server, wait_until
):
    handler = Counting(blocked=True)
    server = await start_server(handler)
    old = Client(server.address, identity=b"driver-9")
    pending = asyncio.create_task(old.request("work", request_id="job-7"))
    await wait_until(lambda: server.stats.in_flight == 1, 2, "the request")
    await old.close()  # the driver process dies while the reply is being produced
    await asyncio.gather(pending, return_exceptions=True)
    await asyncio.sleep(0.3)  # let libzmq notice the disconnect
    handler.release.set()
    await wait_until(lambda: server.stats.kept == 1, 3, "the kept reply")

    async with Client(server.address, identity=b"driver-9") as new:
        # The kept reply is redelivered ahead of the resend, and the resend is a
        # duplicate answered from the cache (its copy is counted late).
        assert await new.request("work", request_id="job-7", timeout=5) == {"ran": "work", "n": 1}
        await wait_until(lambda: new.stats.late == 1, 3, "the cached copy")
    stats = server.stats
    assert handler.calls == ["work"] and stats.redelivered == 1 and stats.duplicates == 1


async def test_reconnected_client_resending_a_still_running_id_joins_it(start_server, wait_until):
    handler = Counting(blocked=True)
    server = await start_server(handler)
    old = Client(server.address, identity=b"driver-10")
    pending = asyncio.create_task(old.request("work", request_id="job-8"))
    await wait_until(lambda: server.stats.in_flight == 1, 2, "the request")
    await old.close()
    await asyncio.gather(pending, return_exceptions=True)

    async with Client(server.address, identity=b"driver-10") as new:
        resent = asyncio.create_task(new.request("work", request_id="job-8", timeout=5))
        await wait_until(lambda: server.stats.duplicates == 1, 3, "the resend")
        handler.release.set()
        assert await resent == {"ran": "work", "n": 1}
    assert handler.calls == ["work"]


async def test_fail_pending_survives_a_broken_exception_factory(start_server, connect, wait_until):
    handler = Counting(blocked=True)
    server = await start_server(handler)
    client = await connect(server.address)
    tasks = [asyncio.create_task(client.request(i)) for i in range(3)]
    await wait_until(lambda: server.stats.in_flight == 3, 2, "three requests")
    assert client.fail_pending(lambda rid: "not an exception") == 3
    async with asyncio.timeout(5):
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RequestAbandoned) for r in results), results
    handler.release.set()
