"""Client: one ZeroMQ DEALER that multiplexes many concurrent requests to one Server.

Every request gets a string id and one small pending record (future, deadline)
in a dict; a single receive-loop task matches replies to records by id. So
thousands of requests can be in flight from one socket, and each caller only
ever waits for its own reply, bounded by its own deadline.

Guarantees a caller can rely on:

* ``request()`` returns the reply body, or raises exactly one of
  RemoteError / RequestTimeout / TransportClosed / ProtocolError /
  TransportError -- never a pyzmq exception, never waits past its deadline.
* A timed-out request removes its own record; a reply that arrives later is
  counted (``stats.late``) and dropped, never delivered to someone else.
* ``close()`` fails every pending request with TransportClosed;
  ``fail_pending()`` fails them (with RequestAbandoned or the caller's
  exception) but keeps the client usable -- a driver that declared the server
  dead moves that work elsewhere. Replies that come later are counted late.

Resending: ``request(..., resend_after=S)`` sends the *same* request id again
every S seconds until a reply arrives or ``timeout`` passes. It is safe because
the server is idempotent by id (a resend joins the running handler or gets the
cached reply), and it covers the cases where one message is lost without any
error: a reply sent into a connection libzmq has not yet noticed is dead, a
request a killed server had received, or one swallowed while a heartbeat
timeout replaced the connection. Extra replies are counted late. While the
server is unreachable the copies wait in the DEALER's queue (at most
timeout/resend_after per request) and are all answered from one run. Off by
default: while the server is up and stays up one send is enough.

Liveness: ZMTP heartbeats (``heartbeat_ivl`` / ``heartbeat_timeout``) make
libzmq drop and re-dial a connection to a server that stopped answering;
``heartbeat_ttl`` asks the server to drop us if we go silent. They do not fail
pending requests (that is the caller's decision): use ``ping``/``alive`` to
probe the server's event loop, then ``fail_pending``.

The DEALER's ROUTING_ID is stable (given, or a random one fixed at
construction) so the server, which sets ROUTER_HANDOVER, can recognise a
reconnecting client and redeliver replies it kept while the client was away.
Request ids carry a random per-Client prefix so a new Client reusing an old
identity never mistakes an old, redelivered reply for one of its own.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import zmq
import zmq.asyncio

from ._heartbeat import set_heartbeats
from .errors import ProtocolError, RemoteError, RequestAbandoned, RequestTimeout, TransportClosed, TransportError
from .protocol import ERROR, PING, PONG, REPLY, REQUEST, Envelope, decode, encode

__all__ = ["Client", "ClientStats"]

log = logging.getLogger(__name__)

# See server.py: a busy socket never yields from an awaited recv; yield every N messages.
_RECV_BATCH = 128


class _State(enum.Enum):
    CREATED = "created"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ClientStats:
    sent: int  # requests and pings handed to the socket
    replies: int  # replies matched to a pending request
    late: int  # replies for ids no longer pending (timed out, failed, resent, earlier Client): dropped
    malformed: int  # frames that were not a valid envelope
    timeouts: int  # requests that hit their deadline
    outstanding: int  # pending requests right now (gauge)
    resends: int  # extra sends of a pending request id (resend_after)
    abandoned: int  # pending requests failed by fail_pending()


class _Pending:
    __slots__ = ("future", "deadline")

    def __init__(self, future: asyncio.Future[Envelope], deadline: float | None) -> None:
        self.future = future
        self.deadline = deadline  # loop.time() based; kept for introspection / liveness sweeps


class Client:
    """Send requests to one Server at ``address`` (``tcp://host:port``)."""

    def __init__(
        self,
        address: str,
        *,
        hwm: int = 0,
        identity: bytes | None = None,
        default_timeout: float | None = 60.0,
        heartbeat_ivl: float | None = 1.0,
        heartbeat_timeout: float | None = 3.0,
        heartbeat_ttl: float | None = 3.0,
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        if identity is not None:
            if not isinstance(identity, bytes) or not 1 <= len(identity) <= 255:
                raise ValueError("identity must be 1..255 bytes")
            if identity[0] == 0:
                raise ValueError("identity must not start with a zero byte (reserved by libzmq)")
        self._address = address
        self._hwm = hwm
        self._identity = identity if identity is not None else b"rayeval-" + uuid.uuid4().hex.encode()
        self._default_timeout = default_timeout
        self._heartbeat = (heartbeat_ivl, heartbeat_timeout, heartbeat_ttl)
        self._ctx = context or zmq.asyncio.Context.instance()
        self._prefix = uuid.uuid4().hex[:12] + "-"
        self._ids = itertools.count()
        self._pending: dict[str, _Pending] = {}
        self._state = _State.CREATED
        self._sock: zmq.asyncio.Socket | None = None
        self._recv_task: asyncio.Task[None] | None = None
        self._sent = self._replies = self._late = self._malformed = self._timeouts = 0
        self._resends = self._abandoned = 0

    # ----------------------------------------------------------------- lifecycle
    @property
    def address(self) -> str:
        return self._address

    @property
    def identity(self) -> bytes:
        return self._identity

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    @property
    def stats(self) -> ClientStats:
        return ClientStats(
            sent=self._sent,
            replies=self._replies,
            late=self._late,
            malformed=self._malformed,
            timeouts=self._timeouts,
            outstanding=len(self._pending),
            resends=self._resends,
            abandoned=self._abandoned,
        )

    async def start(self) -> None:
        """Connect and start the receive loop (``request``/``ping`` do this lazily)."""
        self._ensure_open()

    def _ensure_open(self) -> zmq.asyncio.Socket:
        if self._state is _State.OPEN:
            assert self._sock is not None
            return self._sock
        if self._state is _State.CLOSED:
            raise TransportClosed(f"client for {self._address} is closed")
        sock = self._ctx.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.ROUTING_ID, self._identity)
            sock.setsockopt(zmq.SNDHWM, self._hwm)
            sock.setsockopt(zmq.RCVHWM, self._hwm)
            # LINGER 0: after close() every pending request has already failed
            # with TransportClosed, so nothing queued is worth flushing, and
            # close must not block on an unreachable server.
            sock.setsockopt(zmq.LINGER, 0)
            set_heartbeats(sock, *self._heartbeat)
            sock.connect(self._address)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise TransportError(f"cannot connect DEALER to {self._address}: {exc}") from exc
        self._sock = sock
        self._state = _State.OPEN
        self._recv_task = asyncio.create_task(self._recv_loop(), name=f"transport-client-recv {self._address}")
        return sock

    async def close(self) -> None:
        """Fail every pending request with TransportClosed and close the socket. Idempotent."""
        if self._state is not _State.CLOSED:
            self._state = _State.CLOSED
            self._fail_all(lambda rid: TransportClosed(f"client for {self._address} closed while {rid} was pending"))
        # Not guarded by the state: a failed receive loop marks us closed but
        # leaves the socket for close() to release.
        if self._recv_task is not None and not self._recv_task.done():
            self._recv_task.cancel()
            await asyncio.gather(self._recv_task, return_exceptions=True)
        if self._sock is not None and not self._sock.closed:
            self._sock.close(linger=0)

    async def __aenter__(self) -> "Client":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _fail_all(self, make_exc: Callable[[str], BaseException]) -> int:
        pending, self._pending = self._pending, {}
        failed = 0
        for rid, rec in pending.items():
            if rec.future.done():
                continue
            try:
                rec.future.set_exception(make_exc(rid))
            except Exception as bug:  # a broken factory (or a non-exception) must not leave the rest hanging
                msg = f"request {rid} abandoned (exception factory failed: {bug!r})"
                rec.future.set_exception(RequestAbandoned(msg, request_id=rid))
            failed += 1
        return failed

    def fail_pending(self, exc_factory: Callable[[str], BaseException] | None = None) -> int:
        """Fail every pending request and ping now; returns how many were failed.

        ``exc_factory(request_id)`` makes each exception (one per request, so
        tracebacks are not shared); default :class:`RequestAbandoned`. The
        client stays open: new requests go out as usual, and a reply that still
        arrives for a failed id is counted in ``stats.late`` and dropped. Use it
        when the caller has decided this server is dead and resubmits the work
        elsewhere (keep the request ids: ids are global, results are cached per
        server, so the work runs at least once overall).
        """
        if exc_factory is None:

            def exc_factory(rid: str) -> BaseException:
                return RequestAbandoned(f"request {rid} to {self._address} abandoned", request_id=rid)

        failed = self._fail_all(exc_factory)
        self._abandoned += failed
        return failed

    # ----------------------------------------------------------------- requests
    async def request(
        self,
        body: Any,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        resend_after: float | None = None,
    ) -> Any:
        """Send ``body``, return the reply body. ``timeout=None`` uses ``default_timeout``.

        ``request_id`` makes a retry idempotent: pass the id of an earlier
        attempt and the server answers from that attempt instead of running
        the handler again. ``resend_after`` (seconds) resends the same id
        until a reply comes or the timeout passes (see the module docstring).
        """
        if resend_after is not None and not resend_after > 0:
            raise ValueError("resend_after must be > 0 seconds (or None)")
        sock = self._ensure_open()
        rid = request_id if request_id is not None else self._prefix + str(next(self._ids))
        if rid in self._pending:
            raise ValueError(f"request id {rid!r} is already pending")
        payload = encode(Envelope(REQUEST, rid, body))  # fails before anything is registered
        env = await self._roundtrip(sock, rid, payload, timeout, resend_after)
        if env.kind == REPLY:
            return env.body
        if env.kind == ERROR:
            raise RemoteError.from_record(env.body, request_id=rid)
        raise ProtocolError(f"unexpected {env.kind!r} reply to request {rid}", request_id=rid)

    async def ping(self, timeout: float | None = None) -> float:
        """Round-trip a PING through the server's receive loop; returns seconds."""
        sock = self._ensure_open()
        rid = self._prefix + "p" + str(next(self._ids))
        payload = encode(Envelope(PING, rid, None))
        t0 = time.perf_counter()
        env = await self._roundtrip(sock, rid, payload, timeout)
        elapsed = time.perf_counter() - t0
        if env.kind == PONG:
            return elapsed
        if env.kind == ERROR:
            raise RemoteError.from_record(env.body, request_id=rid)
        raise ProtocolError(f"unexpected {env.kind!r} reply to ping {rid}", request_id=rid)

    async def alive(self, timeout: float = 2.0) -> bool:
        """True if the server's event loop answers a ping within ``timeout``. Never raises a transport error."""
        try:
            await self.ping(timeout=timeout)
        except TransportError:
            return False
        return True

    async def _roundtrip(
        self,
        sock: zmq.asyncio.Socket,
        rid: str,
        payload: bytes,
        timeout: float | None,
        resend_after: float | None = None,
    ) -> Envelope:
        limit = self._default_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        rec = _Pending(loop.create_future(), deadline)
        self._pending[rid] = rec
        try:
            async with asyncio.timeout_at(deadline):
                await self._send(sock, payload)
                if resend_after is None:
                    return await rec.future
                while True:
                    # asyncio.wait neither cancels the future on its own timeout
                    # nor when the deadline cancels it, so the record stays valid.
                    done, _ = await asyncio.wait((rec.future,), timeout=resend_after)
                    if done:
                        return rec.future.result()
                    await self._send(sock, payload)
                    self._resends += 1
        except TimeoutError:
            # Only our own deadline lands here: asyncio.timeout converts its own
            # cancellation into TimeoutError and lets foreign cancellations through.
            self._timeouts += 1
            raise RequestTimeout(f"no reply to {rid} within {limit}s", request_id=rid, timeout=limit) from None
        finally:
            if self._pending.get(rid) is rec:
                del self._pending[rid]
            if rec.future.done() and not rec.future.cancelled():
                # close() may fail the future while this task is still inside
                # _send (which then raises its own TransportClosed); mark the
                # future's exception retrieved so asyncio does not log it.
                rec.future.exception()

    async def _send(self, sock: zmq.asyncio.Socket, payload: bytes) -> None:
        try:
            # Awaited sends from many tasks are safe on a DEALER: pyzmq queues
            # them FIFO, each is a single frame, and a DEALER with a full pipe
            # really waits (unlike a ROUTER_MANDATORY ROUTER, which raises).
            await sock.send(payload)
        except zmq.ZMQError as exc:
            if self._state is _State.CLOSED:
                raise TransportClosed(f"client for {self._address} is closed") from exc
            raise TransportError(f"send to {self._address} failed: {exc}") from exc
        except asyncio.CancelledError:
            # pyzmq cancels queued send futures when the socket closes. That is
            # our close(), not a cancellation of this task: report it as such.
            task = asyncio.current_task()
            if self._state is _State.CLOSED and task is not None and task.cancelling() == 0:
                raise TransportClosed(f"client for {self._address} closed during send") from None
            raise
        self._sent += 1

    # ----------------------------------------------------------------- receive
    async def _recv_loop(self) -> None:
        assert self._sock is not None
        sock = self._sock
        try:
            while True:
                self._on_frames(await sock.recv_multipart())
                # Take what is already queued without awaiting (see Server._recv_loop).
                drained = 0
                while drained < _RECV_BATCH:
                    try:
                        frames = sock.recv_multipart(flags=zmq.DONTWAIT).result()
                    except zmq.Again:
                        break
                    self._on_frames(frames)
                    drained += 1
                if drained == _RECV_BATCH:
                    await asyncio.sleep(0)
        except Exception as exc:  # ZMQError at teardown, or a bug
            # Without this loop no request can ever complete: fail them all now
            # instead of letting each one sit until its deadline.
            if self._state is not _State.CLOSED:
                log.exception("transport client %s: receive loop failed", self._address)
                self._state = _State.CLOSED
                reason = f"receive loop for {self._address} failed: {exc!r}"
                self._fail_all(lambda rid: TransportClosed(reason))

    def _on_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 1:
            self._malformed += 1
            log.debug("transport client %s: dropped %d-frame message", self._address, len(frames))
            return
        try:
            env = decode(frames[0])
        except ProtocolError as exc:
            self._malformed += 1
            rec = self._pending.get(exc.request_id) if exc.request_id is not None else None
            if rec is not None and not rec.future.done():
                rec.future.set_exception(exc)  # fail that request now rather than at its timeout
            return
        rec = self._pending.get(env.request_id)
        if rec is None or rec.future.done():
            self._late += 1
            return
        self._replies += 1
        rec.future.set_result(env)
