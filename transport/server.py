"""Server: one ZeroMQ ROUTER that answers requests through an async handler.

The reason this module exists: a plain ROUTER silently drops a reply when the
peer's pipe is full or the peer is gone -- ``send`` reports success and the
client waits forever. Measured here (pyzmq 27.3 / libzmq 4.3.5): with HWM 3 and
no ROUTER_MANDATORY, 6-160 of 200 queued replies arrived. So:

* ROUTER_MANDATORY=1 turns both silent drops into errors we can act on:
  ``zmq.Again`` (peer connected but its pipe is full) and ``EHOSTUNREACH``
  (no such peer connected).
* On ``zmq.Again`` the reply goes into a per-peer FIFO backlog drained by one
  task per blocked peer with bounded exponential backoff (1 ms .. 100 ms). It
  is retried until it is sent, the peer disconnects, or the server closes:
  never dropped. Other peers are not affected (no head-of-line blocking).
* On ``EHOSTUNREACH`` the reply is kept in a bounded store (see
  :class:`~._kept.KeptReplies`) and redelivered, before anything else, when a
  message arrives from that identity again (ROUTER_HANDOVER=1 lets a
  reconnecting DEALER with the same ROUTING_ID take over its identity).

Known gap that ROUTER_MANDATORY cannot close: libzmq notices a disconnect
about 50 ms after the peer goes; a reply sent inside that window lands in the
dying pipe and is lost. Only an application-level retry (same request id) can
cover that, so requests are idempotent by id: a resent id that is still
running joins that run, one that finished gets the cached reply (see
:mod:`._results`, which also says why ``retryable`` errors are not cached).

ZMTP heartbeats make libzmq drop the connection of a peer that stopped
answering (SIGSTOP, dead host), so its replies are kept instead of vanishing
into a dead TCP pipe. libzmq's I/O thread answers them, so a peer merely busy
in Python (GIL held) is not mistaken for a dead one.

How sends are serialised: every send is a *synchronous* ``DONTWAIT``
``send_multipart`` call made on the event-loop thread, so two tasks can never
interleave frames of one multipart message and no lock is needed. We never
issue an awaited (blocking) send: pyzmq queues awaited sends, and with
ROUTER_MANDATORY a queued send to a full peer fails with ``zmq.Again`` anyway
instead of waiting; worse, while any awaited send is queued, pyzmq would queue
our DONTWAIT sends behind it too. Going through the asyncio socket's own
``send_multipart`` (rather than a raw shadow socket) keeps pyzmq's
edge-triggered wake-up bookkeeping for the receive side correct.

Memory: a backlog is bounded only by how many requests its peer has
outstanding (every reply answers one request). A small ``hwm`` therefore moves
buffering from libzmq into Python rather than reducing it; real backpressure
is the client limiting its in-flight requests. The result cache and the kept
store hold up to ``max_result_bytes`` + ``max_kept_bytes`` on top.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import zmq
import zmq.asyncio

from ._heartbeat import set_heartbeats
from ._kept import KeptReplies
from ._results import ResultCache
from .errors import ProtocolError, TransportClosed, TransportError, error_record
from .protocol import ERROR, PING, PONG, REPLY, REQUEST, Envelope, decode, encode, error_body

__all__ = ["Server", "ServerStats"]

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Any]]

_BACKOFF_START = 0.001
_BACKOFF_CAP = 0.1
# A busy socket resolves awaited recvs without ever yielding to the event loop;
# yield every this-many messages so handler and drainer tasks are not starved.
_RECV_BATCH = 128

_SENT, _AGAIN, _UNREACHABLE, _FAILED = range(4)


class _State(enum.Enum):
    CREATED = "created"
    SERVING = "serving"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ServerStats:
    """A snapshot of the server's counters (cumulative unless noted)."""

    received: int  # valid REQUEST envelopes received (duplicates included)
    replied: int  # REPLY/ERROR envelopes handed to libzmq (incl. redelivered ones)
    errors: int  # handler exceptions turned into ERROR replies
    malformed: int  # frames that were not a valid envelope (answered or dropped)
    again_retries: int  # sends that hit a full peer pipe and were retried later
    unreachable: int  # sends that failed with EHOSTUNREACH
    kept: int  # replies currently held for a disconnected peer (gauge)
    evicted: int  # kept replies dropped by the count/bytes/age bounds
    redelivered: int  # kept replies handed back for sending when their peer came back
    backlog: int  # replies currently waiting for a full peer pipe (gauge)
    pings: int  # PING envelopes answered
    in_flight: int  # handler tasks currently running (gauge)
    duplicates: int  # requests whose id was already running or cached: handler not run again
    cached: int  # finished replies held in the result cache (gauge)
    cache_evicted: int  # result-cache entries dropped by the count/bytes/age bounds


class Server:
    """Serve ``handler(body) -> reply body`` on a ROUTER socket.

    ``hwm=0`` (default) means no high-water mark on our side, i.e. no
    backpressure from libzmq; the ``zmq.Again`` path then only triggers when
    the *peer* (or a small ``hwm`` here) limits the pipe. ``router_mandatory``
    exists only so a test can show what happens without it.

    ``max_results`` / ``max_result_bytes`` / ``result_max_age`` bound the
    result cache that makes a resent request id idempotent (``max_results=0``
    disables caching; running ids are still joined). ``heartbeat_ivl`` /
    ``heartbeat_timeout`` are seconds (None disables ZMTP heartbeats).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hwm: int = 0,
        router_mandatory: bool = True,
        linger_ms: int = 1000,
        max_message_size: int = 16 * 1024 * 1024,
        max_kept: int = 10_000,
        max_kept_bytes: int = 256 * 1024 * 1024,
        kept_max_age: float = 600.0,
        max_results: int = 50_000,
        max_result_bytes: int = 256 * 1024 * 1024,
        result_max_age: float = 600.0,
        heartbeat_ivl: float | None = 1.0,
        heartbeat_timeout: float | None = 3.0,
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._hwm = hwm
        self._router_mandatory = router_mandatory
        self._linger_ms = linger_ms
        self._max_message_size = max_message_size
        self._heartbeat_ivl = heartbeat_ivl
        self._heartbeat_timeout = heartbeat_timeout
        self._ctx = context or zmq.asyncio.Context.instance()
        self._state = _State.CREATED
        self._sock: zmq.asyncio.Socket | None = None
        self._address: str | None = None
        self._recv_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # handler tasks
        self._backlogs: dict[bytes, deque[tuple[str, bytes, float]]] = {}
        self._drainers: dict[bytes, asyncio.Task[None]] = {}
        self._kept = KeptReplies(max_count=max_kept, max_bytes=max_kept_bytes, max_age=kept_max_age)
        self._results = ResultCache(max_count=max_results, max_bytes=max_result_bytes, max_age=result_max_age)
        # request id -> identities waiting for its running handler (one reply per ask,
        # so a resend while running gets its own; the client drops the extra one as late)
        self._running: dict[str, list[bytes]] = {}
        self._duplicates = 0
        self._received = self._replied = self._errors = self._malformed = 0
        self._again_retries = self._unreachable = self._redelivered = self._pings = 0

    # ----------------------------------------------------------------- lifecycle
    @property
    def state(self) -> str:
        return self._state.value

    @property
    def address(self) -> str:
        if self._address is None:
            raise RuntimeError("Server.address is only known after start()")
        return self._address

    @property
    def stats(self) -> ServerStats:
        now = time.monotonic()
        self._kept.expire(now)
        self._results.expire(now)
        return ServerStats(
            received=self._received,
            replied=self._replied,
            errors=self._errors,
            malformed=self._malformed,
            again_retries=self._again_retries,
            unreachable=self._unreachable,
            kept=len(self._kept),
            evicted=self._kept.evicted,
            redelivered=self._redelivered,
            backlog=sum(len(b) for b in self._backlogs.values()),
            pings=self._pings,
            in_flight=len(self._tasks),
            duplicates=self._duplicates,
            cached=len(self._results),
            cache_evicted=self._results.evicted,
        )

    async def start(self) -> str:
        """Bind and start serving; returns ``tcp://host:port``."""
        if self._state is _State.CLOSED:
            raise TransportClosed("Server was closed; create a new one")
        if self._state is _State.SERVING:
            raise RuntimeError(f"Server already started at {self._address}")
        sock = self._ctx.socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1 if self._router_mandatory else 0)
            # A DEALER that reconnects with the same ROUTING_ID must take over its
            # identity (otherwise libzmq ignores the new connection and the
            # redelivery of kept replies could never reach it).
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
            sock.setsockopt(zmq.SNDHWM, self._hwm)
            sock.setsockopt(zmq.RCVHWM, self._hwm)
            # Bounded linger: on close, replies already inside libzmq get up to
            # linger_ms to reach their peers. 0 would throw them away; -1 (the
            # libzmq default) can hang context teardown forever on a dead peer.
            sock.setsockopt(zmq.LINGER, self._linger_ms)
            sock.setsockopt(zmq.MAXMSGSIZE, self._max_message_size)
            set_heartbeats(sock, self._heartbeat_ivl, self._heartbeat_timeout)
            if self._port:
                sock.bind(f"tcp://{self._host}:{self._port}")
            else:
                sock.bind(f"tcp://{self._host}:*")
            endpoint = sock.getsockopt(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise TransportError(f"cannot bind ROUTER on {self._host}:{self._port or '*'}: {exc}") from exc
        self._address = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)
        self._sock = sock
        self._state = _State.SERVING
        self._recv_task = asyncio.create_task(self._recv_loop(), name=f"transport-server-recv {self._address}")
        return self._address

    async def close(self) -> None:
        """Cancel in-flight handlers and drainers, then close the socket. Idempotent."""
        if self._state is _State.CLOSED:
            return
        was_serving = self._state is _State.SERVING
        self._state = _State.CLOSED
        if not was_serving:
            return
        tasks = [t for t in (self._recv_task, *self._tasks, *self._drainers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        try:
            # return_exceptions collects the CancelledErrors of the tasks we just
            # cancelled; a cancellation of close() itself still propagates.
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            if self._sock is not None:
                self._sock.close(linger=self._linger_ms)
            dropped = sum(len(b) for b in self._backlogs.values()) + len(self._kept)
            if dropped:
                log.warning("transport server %s closed with %d undelivered replies", self._address, dropped)

    async def __aenter__(self) -> "Server":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- receive
    async def _recv_loop(self) -> None:
        assert self._sock is not None
        sock = self._sock
        while True:
            try:
                batch = [await sock.recv_multipart()]
                # Whatever else is already queued is taken without awaiting: pyzmq resolves
                # DONTWAIT receives on the spot, skipping the per-await future bookkeeping that
                # dominated this loop's profile. Bounded, so handlers still get their turn.
                while len(batch) < _RECV_BATCH:
                    try:
                        batch.append(sock.recv_multipart(flags=zmq.DONTWAIT).result())
                    except zmq.Again:
                        break
            except zmq.ZMQError as exc:
                # Only teardown (closed socket / terminated context) gets here.
                if self._state is not _State.CLOSED:
                    log.error("transport server %s: receive failed, stopping: %s", self._address, exc)
                return
            for frames in batch:
                try:
                    self._on_message(frames)
                except Exception:  # the server must never die on input; log loudly instead
                    self._malformed += 1
                    log.exception("transport server %s: unexpected error handling a message", self._address)
            if len(batch) == _RECV_BATCH:
                await asyncio.sleep(0)

    def _on_message(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            self._malformed += 1  # no payload frame at all: nothing to answer
            return
        identity = frames[0]
        if identity in self._kept:
            self._redeliver(identity)
        if len(frames) != 2:
            # Our protocol is exactly one payload frame; try the first for an id.
            self._reject(identity, frames[1], f"expected 1 payload frame, got {len(frames) - 1}")
            return
        try:
            env = decode(frames[1])
        except ProtocolError as exc:
            self._reject(identity, frames[1], str(exc), exc.request_id)
            return
        if env.kind == REQUEST:
            self._received += 1
            self._on_request(identity, env.request_id, env.body)
        elif env.kind == PING:
            # Answered here, from the receive loop: a PONG proves the event loop
            # itself is responsive, independent of how busy the handlers are.
            self._pings += 1
            self._send_or_queue(identity, env.request_id, encode(Envelope(PONG, env.request_id, env.body)))
        else:
            self._reject(identity, frames[1], f"a server does not accept kind {env.kind!r}", env.request_id)

    def _reject(self, identity: bytes, payload: bytes, reason: str, request_id: str | None = None) -> None:
        """Count a malformed message; answer with a ProtocolError if its request id is readable."""
        self._malformed += 1
        if request_id is None:
            try:
                request_id = decode(payload).request_id  # a valid payload inside wrong framing
            except ProtocolError as exc:
                request_id = exc.request_id
        if request_id is None:
            log.debug("transport server %s: dropped unanswerable malformed message: %s", self._address, reason)
            return
        body = error_body("ProtocolError", reason, False)
        self._send_or_queue(identity, request_id, encode(Envelope(ERROR, request_id, body)))

    # ----------------------------------------------------------------- handling
    def _on_request(self, identity: bytes, request_id: str, body: Any) -> None:
        """Run the handler once per request id; a resent id joins the run or gets the cached reply."""
        waiters = self._running.get(request_id)
        if waiters is not None:
            self._duplicates += 1
            waiters.append(identity)
            return
        cached = self._results.get(request_id, now=time.monotonic())
        if cached is not None:
            self._duplicates += 1
            self._send_or_queue(identity, request_id, cached)
            return
        self._running[request_id] = [identity]
        task = asyncio.create_task(self._serve(request_id, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, request_id: str, body: Any) -> None:
        try:
            try:
                result = await self._handler(body)
                payload = encode(Envelope(REPLY, request_id, result))
                cacheable = True
            except Exception as exc:  # a handler failure is an answer, not a crash (CancelledError passes)
                self._errors += 1
                record = error_record(exc)
                payload = encode(Envelope(ERROR, request_id, record))
                cacheable = not record["retryable"]  # a resend of a retryable failure runs again
        except BaseException:
            self._running.pop(request_id, None)  # cancelled (server closing): nobody gets a reply
            raise
        # No await below: a resend finds either the running entry or the cached reply.
        waiters = self._running.pop(request_id, [])
        if cacheable:
            self._results.put(request_id, payload, now=time.monotonic())
        for identity in waiters:
            self._send_or_queue(identity, request_id, payload)

    # ----------------------------------------------------------------- sending
    def _try_send(self, identity: bytes, payload: bytes) -> int:
        assert self._sock is not None
        try:
            fut = self._sock.send_multipart([identity, payload], flags=zmq.DONTWAIT)
            # pyzmq resolves a DONTWAIT send synchronously as long as no awaited
            # send is queued on the socket; this class never queues one.
            fut.result()
        except zmq.Again:
            return _AGAIN
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                return _UNREACHABLE
            if exc.errno == zmq.EINTR:
                return _AGAIN
            # ENOTSOCK/ETERM: the socket is being torn down under us.
            log.warning("transport server %s: send failed (%s); reply dropped at shutdown", self._address, exc)
            return _FAILED
        self._replied += 1
        return _SENT

    def _send_or_queue(self, identity: bytes, request_id: str, payload: bytes, t: float | None = None) -> None:
        """Send now, or hand the reply to the peer's backlog / the kept store. Never drops.

        ``t`` is when the reply was first made undeliverable (for the kept
        store's age bound); new replies leave it None.
        """
        if self._state is not _State.SERVING:
            return
        backlog = self._backlogs.get(identity)
        if backlog is not None:
            backlog.append((request_id, payload, t or time.monotonic()))  # FIFO behind the blocked ones
            return
        outcome = self._try_send(identity, payload)
        if outcome == _AGAIN:
            self._again_retries += 1
            self._backlogs[identity] = deque([(request_id, payload, t or time.monotonic())])
            self._drainers[identity] = asyncio.create_task(self._drain(identity), name="transport-server-drain")
        elif outcome == _UNREACHABLE:
            self._keep(identity, request_id, payload, t or time.monotonic())

    async def _drain(self, identity: bytes) -> None:
        """Send one blocked peer's backlog in order, backing off while its pipe is full."""
        backlog = self._backlogs[identity]
        delay = _BACKOFF_START
        try:
            while backlog:
                await asyncio.sleep(delay)
                sent = 0
                while backlog and sent < _RECV_BATCH:  # bounded burst, then yield to the loop
                    request_id, payload, t = backlog[0]
                    outcome = self._try_send(identity, payload)
                    if outcome == _SENT or outcome == _FAILED:
                        backlog.popleft()
                        sent += 1
                    elif outcome == _AGAIN:
                        self._again_retries += 1
                        break
                    else:  # _UNREACHABLE: the peer went away while we waited; keep all of it, in order
                        while backlog:
                            request_id, payload, t = backlog.popleft()
                            self._keep(identity, request_id, payload, t)
                # Progress resets the backoff; a still-full pipe doubles it up to the cap.
                delay = _BACKOFF_START if sent else min(delay * 2, _BACKOFF_CAP)
        finally:
            self._backlogs.pop(identity, None)
            self._drainers.pop(identity, None)

    def _keep(self, identity: bytes, request_id: str, payload: bytes, t: float) -> None:
        self._unreachable += 1
        log.debug("transport server %s: peer %r unreachable, keeping reply %s", self._address, identity, request_id)
        self._kept.add(identity, request_id, payload, t, now=time.monotonic())

    def _redeliver(self, identity: bytes) -> None:
        """The peer is back: send its kept replies, oldest first, ahead of anything new."""
        entries = self._kept.take(identity, now=time.monotonic())
        if not entries:
            return
        log.debug("transport server %s: redelivering %d kept replies to %r", self._address, len(entries), identity)
        self._redelivered += len(entries)
        backlog = self._backlogs.get(identity)
        if backlog is not None:  # a drainer is running for this peer: put them at its front
            backlog.extendleft(reversed(entries))
            return
        # In order through the normal path: once one hits a full pipe, the rest
        # queue behind it in the new backlog; unreachable ones are kept again.
        for request_id, payload, t in entries:
            self._send_or_queue(identity, request_id, payload, t)
