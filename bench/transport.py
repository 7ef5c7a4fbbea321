"""Throughput of rayeval.transport versus a bare pyzmq ROUTER/DEALER echo.

Not a test: a measurement to see what the safety machinery (envelopes,
per-request futures and deadlines, one task per request, DONTWAIT sends with
backlog) costs over the thinnest possible asyncio echo.

The server runs in a child process (as it does in production, inside a Ray
actor), the client in this one; both sides use zmq.asyncio. For each window
(number of requests in flight) it sends ``--count`` requests with a
``--size``-byte body and prints messages per second and the ratio ours/raw.

    ../shared/bin/loopback-only .venv/bin/python bench/transport.py
    ../shared/bin/loopback-only .venv/bin/python bench/transport.py --windows 1 64 1024 --count 20000

It also measures the same echo as Ray async actor calls (the alternative to a socket per
server), in the same run. Target: ours >= 0.7x raw pyzmq.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time

import zmq
import zmq.asyncio


# ----------------------------------------------------------------- servers (child process)
async def _ours_server(conn) -> None:
    from rayeval.transport import Server

    async def echo(body):
        return body

    async with Server(echo) as server:
        conn.send(server.address)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # wait for "stop"


async def _raw_server(conn) -> None:
    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:*")
    conn.send(sock.getsockopt(zmq.LAST_ENDPOINT).decode())

    async def loop() -> None:
        while True:
            frames = await sock.recv_multipart()
            await sock.send_multipart(frames)

    task = asyncio.create_task(loop())
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    task.cancel()
    sock.close()


def _serve(kind: str, conn) -> None:
    asyncio.run(_ours_server(conn) if kind == "ours" else _raw_server(conn))


# ----------------------------------------------------------------- clients (this process)
async def _ours_client(address: str, window: int, count: int, body: bytes) -> float:
    from rayeval.transport import Client

    async with Client(address) as client:
        await client.request(body)  # connect and warm up
        remaining = count

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                reply = await client.request(body)
                assert len(reply) == len(body)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(window)))
        return time.perf_counter() - t0


async def _raw_client(address: str, window: int, count: int, body: bytes) -> float:
    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    try:
        await sock.send(body)
        await sock.recv()  # connect and warm up
        slots = asyncio.Semaphore(window)

        async def sender() -> None:
            for _ in range(count):
                await slots.acquire()
                await sock.send(body)

        t0 = time.perf_counter()
        send_task = asyncio.create_task(sender())
        for _ in range(count):
            assert len(await sock.recv()) == len(body)
            slots.release()
        await send_task
        return time.perf_counter() - t0
    finally:
        sock.close()


def _run(kind: str, window: int, count: int, body: bytes) -> float:
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_serve, args=(kind, child), daemon=True)
    proc.start()
    try:
        address = parent.recv()
        client = _ours_client if kind == "ours" else _raw_client
        elapsed = asyncio.run(client(address, window, count, body))
    finally:
        parent.send("stop")
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
    return count / elapsed


async def _ray_calls(actor, window: int, count: int, body: bytes) -> float:
    """The same echo as Ray async actor calls (what the transport replaces on the hot path)."""
    await actor.echo.remote(body)  # warm up
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            assert len(await actor.echo.remote(body)) == len(body)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(window)))
    return time.perf_counter() - t0


def _ray_rates(windows: list[int], count: int, body: bytes) -> dict[int, float]:
    import ray

    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        @ray.remote(num_cpus=0.1, max_concurrency=10_000)
        class Echo:
            async def echo(self, data: bytes) -> bytes:
                return data

        actor = Echo.remote()
        return {w: count / asyncio.run(_ray_calls(actor, w, count, body)) for w in windows}
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 64, 1024])
    parser.add_argument("--count", type=int, default=20_000, help="requests per measurement")
    parser.add_argument("--size", type=int, default=200, help="body bytes")
    parser.add_argument("--ray-count", type=int, default=5_000, help="requests per Ray measurement")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray actor-call comparison")
    args = parser.parse_args()
    body = b"x" * args.size
    print(f"pyzmq {zmq.__version__} / libzmq {zmq.zmq_version()}; {args.count} requests of {args.size} B each")
    ray_rates = {} if args.no_ray else _ray_rates(args.windows, args.ray_count, body)
    print(f"{'window':>7} {'ours msg/s':>12} {'raw msg/s':>12} {'ours/raw':>9} {'ray calls/s':>12} {'ours/ray':>9}")
    for window in args.windows:
        ours = _run("ours", window, args.count, body)
        raw = _run("raw", window, args.count, body)
        ray_rate = ray_rates.get(window)
        ray_cols = f"{ray_rate:>12,.0f} {ours / ray_rate:>9.1f}" if ray_rate else ""
        print(f"{window:>7} {ours:>12,.0f} {raw:>12,.0f} {ours / raw:>9.2f} {ray_cols}", flush=True)


if __name__ == "__main__":
    main()
