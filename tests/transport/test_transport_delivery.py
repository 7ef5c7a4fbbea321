"""Every reply arrives, even when it cannot be sent right away.

The seed scenario is the bug this project exists to make impossible: a peer
with a small pipe (HWM 3) has 200 requests outstanding and is not reading when
the server answers them all at once. A plain ROUTER drops most of those
replies silently; ours must deliver 200/200. The control test runs the very
same scenario with ROUTER_MANDATORY off and must lose replies -- proof that
the seed test can fail.

Replies are made big (128 KiB) so that the peer's pipe plus the kernel's TCP
buffers cannot absorb them all: that makes the control lose replies on every
run, not just sometimes (with tiny replies the TCP buffers soak up most of
them and the loss depends on timing).
"""

from __future__ import annotations

import asyncio

import pytest

SEED_COUNT = 200
BIG = 128 * 1024


def _barrier_handler(expected: int, reply_size: int):
    """Hold every request until `expected` arrived, then answer all at once (replies pile up)."""
    arrived = 0
    all_in = asyncio.Event()

    async def handler(body):
        nonlocal arrived
        arrived += 1
        if arrived >= expected:
            all_in.set()
        await all_in.wait()
        return {"id": body, "pad": b"x" * reply_size}

    return handler


async def _seed_scenario(start_server, raw_dealer, req, collect, wait_until, *, router_mandatory: bool):
    server = await start_server(_barrier_handler(SEED_COUNT, BIG), hwm=3, router_mandatory=router_mandatory)
    peer = raw_dealer(server.address, hwm=3)
    for i in range(SEED_COUNT):
        await peer.send(req(f"r{i}", i))  # the peer reads nothing yet
    # Wait until the server has dealt with every reply (sent, or parked on a full pipe) ...
    await wait_until(lambda: server.stats.replied + server.stats.backlog >= SEED_COUNT, 10, "all replies attempted")
    await asyncio.sleep(0.1)
    # ... and only now start reading.
    return server, await collect(peer, SEED_COUNT, timeout=3.0 if router_mandatory else 1.0)


async def test_seed_200_replies_to_a_full_hwm3_peer_all_arrive(start_server, raw_dealer, req, collect, wait_until):
    server, got = await _seed_scenario(start_server, raw_dealer, req, collect, wait_until, router_mandatory=True)
    assert sorted(env.request_id for env in got) == sorted(f"r{i}" for i in range(SEED_COUNT))
    assert all(env.kind == "rep" and env.body["id"] == int(env.request_id[1:]) for env in got)
    stats = server.stats
    assert stats.again_retries > 0, "scenario did not fill the pipe, so it tested nothing"
    assert stats.replied == SEED_COUNT and stats.backlog == 0


async def test_control_without_router_mandatory_the_same_scenario_loses_replies(
    start_server, raw_dealer, req, collect, wait_until
):
    server, got = await _seed_scenario(start_server, raw_dealer, req, collect, wait_until, router_mandatory=False)
    # libzmq reported success for every send ...
    assert server.stats.replied == SEED_COUNT
    # ... yet most replies were dropped silently on the full pipe.
    assert len(got) < SEED_COUNT


async def test_seed_200_through_our_client_with_hwm3(start_server, connect):
    server = await start_server(_barrier_handler(SEED_COUNT, BIG), hwm=3)
    client = await connect(server.address, hwm=3, default_timeout=20)
    async with asyncio.timeout(20):
        replies = await asyncio.gather(*(client.request(i) for i in range(SEED_COUNT)))
    assert [r["id"] for r in replies] == list(range(SEED_COUNT))
    assert client.outstanding == 0
    assert server.stats.replied == SEED_COUNT


async def test_20000_concurrent_requests_with_64k_replies_all_arrive(start_server, connect):
    # HWM 0 (the default) on both sides: libzmq's I/O thread streams the 1.3 GB
    # of replies while Python keeps producing them. (With HWM 3 every reply
    # still arrives, but they pile up in the server's Python backlog first:
    # ~1.4 GB RSS, twice the time.) The full-pipe path is covered above.
    count, size = 20_000, 64 * 1024
    blob = b"\xab" * size

    async def handler(body):
        return [body, blob]

    server = await start_server(handler)
    client = await connect(server.address, default_timeout=60)

    async def one(i: int) -> bool:
        reply = await client.request(i)
        return reply[0] == i and len(reply[1]) == size  # drop the 64 KiB right away

    async with asyncio.timeout(60):
        ok = await asyncio.gather(*(one(i) for i in range(count)))
    assert ok.count(True) == count
    assert server.stats.replied == count and server.stats.received == count
    assert client.outstanding == 0 and client.stats.late == 0 and client.stats.replies == count


async def test_a_peer_that_does_not_read_does_not_block_the_others(
    start_server, raw_dealer, connect, req, collect, wait_until
):
    async def handler(body):
        return {"id": body, "pad": b"s" * BIG if body.startswith("slow") else b""}

    server = await start_server(handler, hwm=3)
    slow = raw_dealer(server.address, hwm=3)
    slow_count = 60
    for i in range(slow_count):
        await slow.send(req(f"s{i}", f"slow{i}"))
    # The slow peer's pipe is now full and its replies are parked in the server's backlog.
    await wait_until(lambda: server.stats.backlog > 0, 5, "the slow peer's pipe to fill")

    fast = await connect(server.address, hwm=3, default_timeout=10)
    async with asyncio.timeout(10):
        replies = await asyncio.gather(*(fast.request(f"fast{i}") for i in range(500)))
    assert [r["id"] for r in replies] == [f"fast{i}" for i in range(500)]
    assert server.stats.backlog > 0, "slow peer should still be blocked while the fast one was served"
    retries_while_blocked = server.stats.again_retries
    assert retries_while_blocked > 0

    got = await collect(slow, slow_count, timeout=10)
    assert sorted(env.request_id for env in got) == sorted(f"s{i}" for i in range(slow_count))
    # The backlog keeps FIFO order per peer, so the slow peer sees its replies in request order.
    assert [env.request_id for env in got] == [f"s{i}" for i in range(slow_count)]
    await wait_until(lambda: server.stats.backlog == 0, 2, "backlog to drain")
