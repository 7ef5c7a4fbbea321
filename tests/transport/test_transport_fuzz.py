"""Property test: a server under a stream of garbage still answers every valid request.

Hypothesis generates batches of raw messages -- random bytes, random
multipart lists, and valid envelopes mutated in the ways a buggy or hostile
peer would (truncated, bit-flipped, wrong version/kind/id type, huge ints,
extension types, absurd nesting, wrong frame counts) -- and interleaves them
with valid requests from a real Client. Drawing a payload costs hypothesis ~2 ms, so
each drawn message is sent together with four cheap variants derived from it
(cut in half, a trailing byte, a byte replaced by the never-valid 0xc1, one
extra frame): that keeps 10,000 raw messages within a few seconds. One
server and one set of sockets
live across all examples, so damage done by one batch would show up in the
next.

The expected outcome of every raw message is computed with the protocol
module's own ``decode`` (the server's rules, stated once): a readable request
id must be answered exactly once -- REPLY/PONG for a valid req/ping, ERROR for
everything else -- and a message without one must be dropped and counted.
The assertions compare multisets of (request id, kind), so a missing, extra
or wrong-kind answer fails the example.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import msgpack
import zmq
import zmq.asyncio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rayeval.transport import Client, ProtocolError, Server, decode

STEPS_PER_EXAMPLE = 20
EXAMPLES = 100  # 100 examples x 20 drawn messages x 5 (each + 4 derived) = 10,000 raw messages


def _pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True, datetime=False)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
junk = st.recursive(
    _scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4) | st.integers(-99, 99), c, max_size=3),
    max_leaves=8,
)
ids = st.text(max_size=10)
kinds = st.sampled_from(["req", "rep", "err", "ping", "pong"])
valid_envelope = st.builds(lambda k, i, b: _pack([1, k, i, b]), kinds, ids, junk)


def _cut(data: bytes, n: int) -> bytes:
    return data[: n % max(len(data), 1)]


def _flip(data: bytes, pos: int, byte: int) -> bytes:
    pos %= max(len(data), 1)
    return data[:pos] + bytes([byte]) + data[pos + 1 :]


huge_headers = st.sampled_from([b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xcf"])
payloads = st.one_of(
    st.binary(max_size=64),  # noise
    valid_envelope,  # valid (req/ping answered; rep/err/pong refused with an ERROR)
    st.builds(lambda v, k, i, b: _pack([v, k, i, b]), junk, kinds, ids, junk),  # wrong version (usually)
    st.builds(lambda k, i, b: _pack([1, k, i, b]), junk | st.text(max_size=6), ids, junk),  # wrong kind
    st.builds(lambda k, i, b: _pack([1, k, i, b]), kinds, junk, junk),  # wrong id type
    st.builds(lambda xs: _pack(xs), st.lists(junk, max_size=7)),  # wrong arity / not an envelope
    st.builds(lambda i, extra: _pack([1, "req", i, None, *extra]), ids, st.lists(junk, min_size=1, max_size=3)),
    st.builds(_cut, valid_envelope, st.integers(0, 500)),  # truncated
    st.builds(_flip, valid_envelope, st.integers(0, 500), st.integers(0, 255)),  # one byte changed
    st.builds(lambda i, d: b"\x94\x01\xa3req" + _pack(i) + b"\x91" * d + b"\xc0", ids, st.integers(1, 3000)),
    st.builds(lambda d: b"\x91" * d + b"\xc0", st.integers(1, 3000)),  # nested junk, no envelope
    st.builds(lambda i, c: _pack([1, "req", i, msgpack.ExtType(c, b"x")]), ids, st.integers(0, 127)),
    st.builds(lambda i: _pack([1, "req", i, msgpack.Timestamp(1, 0)]), ids),
    st.builds(lambda h, t: h + t, huge_headers, st.binary(max_size=8)),  # 4 G-element array/map/str, uint64
)
# A message is a list of frames: one (the protocol) or several (wrong frame count).
messages = st.lists(payloads, min_size=1, max_size=1) | st.lists(payloads, min_size=2, max_size=4)
# Each step sends one raw message and, sometimes, one valid request from the Client.
steps = st.tuples(messages, st.one_of(st.just(()), st.just(()), st.tuples(junk)))


def _variants(frames: list[bytes]) -> list[list[bytes]]:
    """The drawn message and four deterministic mutations of it."""
    head, rest = frames[0], frames[1:]
    mid = len(head) // 2
    return [
        frames,
        [head[:mid], *rest],
        [head + b"\x00", *rest],
        [head[:mid] + b"\xc1" + head[mid + 1 :], *rest],
        [*frames, head],
    ]


def _expected(frames: list[bytes]) -> tuple[tuple[str, str] | None, bool]:
    """(answer the server owes as (request id, kind) or None, whether it counts as malformed)."""
    try:
        env = decode(frames[0])
    except ProtocolError as exc:
        return ((exc.request_id, "err") if exc.request_id is not None else None), True
    if len(frames) == 1 and env.kind in ("req", "ping"):
        return (env.request_id, "rep" if env.kind == "req" else "pong"), False
    return (env.request_id, "err"), True


async def _drain(sock: zmq.asyncio.Socket, count: int, timeout: float) -> Counter:
    got: Counter = Counter()
    try:
        async with asyncio.timeout(timeout):
            while sum(got.values()) < count:
                env = decode(await sock.recv())
                got[(env.request_id, env.kind)] += 1
    except TimeoutError:
        pass
    return got


def test_garbage_interleaved_with_valid_requests_never_breaks_the_server():
    loop = asyncio.new_event_loop()
    ctx = zmq.asyncio.Context()
    totals = Counter()

    async def echo(body):
        return body

    async def setup():
        server = Server(echo, context=ctx)
        await server.start()
        client = Client(server.address, context=ctx, default_timeout=30)
        await client.start()
        raw = {}
        for name in ("single", "multi"):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(server.address)
            raw[name] = sock
        return server, client, raw

    server, client, raw = loop.run_until_complete(setup())

    async def one_batch(batch) -> None:
        owed = {"single": Counter(), "multi": Counter()}
        valid = []
        for drawn, maybe_body in batch:
            for frames in _variants(drawn):
                sock = "single" if len(frames) == 1 else "multi"
                await raw[sock].send_multipart(frames)
                answer, malformed = _expected(frames)
                if answer is not None:
                    owed[sock][answer] += 1
                totals["malformed"] += malformed
                totals["raw"] += 1
            if maybe_body:
                valid.append((maybe_body[0], asyncio.create_task(client.request(maybe_body[0]))))
        async with asyncio.timeout(30):
            for body, task in valid:
                assert await task == body
        totals["valid"] += len(valid)
        for name, sock in raw.items():
            want = sum(owed[name].values())
            got = await _drain(sock, want, timeout=5)
            assert got == owed[name], f"{name}: missing {owed[name] - got}, extra {got - owed[name]}"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        # No shrinking: server state carries over between examples, so a
        # "smaller" replay is not the same experiment, and each failing replay
        # would wait out the drain timeout. The failing batch is reported as is.
        phases=(Phase.explicit, Phase.generate),
    )
    @given(st.lists(steps, min_size=STEPS_PER_EXAMPLE, max_size=STEPS_PER_EXAMPLE))
    def run(batch) -> None:
        loop.run_until_complete(one_batch(batch))

    try:
        run()

        async def afterwards():
            assert await client.request({"still": "serving"}) == {"still": "serving"}
            assert await client.alive(5)
            await asyncio.sleep(0.1)  # nothing unexpected still on its way to the raw peers
            for sock in raw.values():
                assert await sock.poll(0) == 0
            return server.stats

        stats = loop.run_until_complete(afterwards())
        assert totals["raw"] >= 10_000, totals
        assert totals["valid"] > 0 and totals["malformed"] > 0, totals
        assert stats.malformed == totals["malformed"], (stats, totals)
        assert stats.in_flight == 0
    finally:

        async def teardown():
            await client.close()
            await server.close()
            for sock in raw.values():
                sock.close(linger=0)

        loop.run_until_complete(teardown())
        loop.close()
        ctx.term()
