"""The store of undeliverable replies stays bounded and hands replies back in order."""

from __future__ import annotations

import asyncio

from rayeval.transport._kept import KeptReplies
from _gated import gated_echo


def _store(**bounds):
    defaults = {"max_count": 100, "max_bytes": 10_000, "max_age": 60.0}
    defaults.update(bounds)
    return KeptReplies(**defaults)


def test_take_returns_one_peers_replies_oldest_first_and_leaves_others():
    kept = _store()
    kept.add(b"a", "a1", b"x", 1.0, now=1.0)
    kept.add(b"b", "b1", b"y", 2.0, now=2.0)
    kept.add(b"a", "a2", b"z", 3.0, now=3.0)
    assert b"a" in kept and len(kept) == 3
    assert [rid for rid, _, _ in kept.take(b"a", now=4.0)] == ["a1", "a2"]
    assert b"a" not in kept and len(kept) == 1 and kept.nbytes == 1
    assert kept.take(b"a", now=4.0) == []
    assert kept.evicted == 0


def test_count_bound_evicts_the_oldest_across_peers():
    kept = _store(max_count=3)
    for i, peer in enumerate([b"a", b"b", b"a", b"b", b"c"]):
        kept.add(peer, f"r{i}", b"x", float(i), now=float(i))
    assert len(kept) == 3 and kept.evicted == 2
    assert [rid for rid, _, _ in kept.take(b"a", now=5.0)] == ["r2"]
    assert [rid for rid, _, _ in kept.take(b"b", now=5.0)] == ["r3"]
    assert [rid for rid, _, _ in kept.take(b"c", now=5.0)] == ["r4"]


def test_byte_bound_evicts_until_under_the_limit():
    kept = _store(max_bytes=100)
    kept.add(b"a", "r1", b"x" * 60, 0.0, now=0.0)
    kept.add(b"a", "r2", b"x" * 30, 1.0, now=1.0)
    kept.add(b"a", "r3", b"x" * 30, 2.0, now=2.0)  # 120 bytes: r1 must go
    assert kept.nbytes == 60 and kept.evicted == 1
    kept.add(b"a", "huge", b"x" * 500, 3.0, now=3.0)  # larger than the bound on its own
    assert kept.nbytes == 0 and len(kept) == 0 and kept.evicted == 4


def test_age_bound_evicts_old_replies_lazily():
    kept = _store(max_age=10.0)
    kept.add(b"a", "old", b"x", 0.0, now=0.0)
    kept.add(b"b", "new", b"x", 8.0, now=8.0)
    kept.expire(now=11.0)
    assert b"a" not in kept and b"b" in kept and kept.evicted == 1
    assert kept.take(b"b", now=19.0) == []  # expired by the time it was asked for
    assert kept.evicted == 2 and len(kept) == 0


def test_taken_entries_do_not_count_against_later_eviction():
    kept = _store(max_count=2)
    kept.add(b"a", "a1", b"x", 0.0, now=0.0)
    kept.take(b"a", now=0.0)
    kept.add(b"b", "b1", b"x", 1.0, now=1.0)
    kept.add(b"b", "b2", b"x", 2.0, now=2.0)
    assert kept.evicted == 0 and len(kept) == 2


async def test_server_bounds_kept_replies_for_a_peer_that_never_returns(start_server, raw_dealer, req, wait_until):
    handler, release = gated_echo()

    server = await start_server(handler, max_kept=3)
    peer = raw_dealer(server.address, identity=b"gone")
    for i in range(5):
        await peer.send(req(f"r{i}", i))
    await wait_until(lambda: server.stats.in_flight == 5, 2, "requests")
    peer.close(linger=0)
    await asyncio.sleep(0.3)
    release.set()
    await wait_until(lambda: server.stats.unreachable == 5, 2, "all five unreachable")
    stats = server.stats
    assert stats.kept == 3 and stats.evicted == 2
