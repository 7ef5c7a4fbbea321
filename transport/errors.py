"""Every exception the transport raises to its callers.

Callers of :mod:`rayeval.transport` catch these and nothing else: each pyzmq
``zmq.ZMQError`` is translated where the socket call is made (``raise ... from
exc``), so a change of messaging library never changes what callers catch, and
the original error stays reachable through ``__cause__`` for debugging.

Tree::

    TransportError                base: anything the transport raises
    ├── ProtocolError             bytes on the wire are not a valid envelope
    ├── RequestTimeout            a wait hit its deadline (the request may still run)
    ├── RemoteError               the peer answered with an ERROR envelope
    ├── RequestAbandoned          the caller gave up on pending requests (Client.fail_pending)
    └── TransportClosed           the Client/Server was closed (or is used after close)

A reply to a peer that is gone (EHOSTUNREACH) raises nothing: the server keeps it and
redelivers it when the peer returns (see ``_kept.py``).

``RequestTimeout`` deliberately does not derive from ``asyncio.TimeoutError``:
a caller that catches the builtin timeout for its own ``asyncio.timeout`` block
must not swallow ours by accident, and vice versa.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = [
    "TransportError",
    "ProtocolError",
    "RequestTimeout",
    "RemoteError",
    "RequestAbandoned",
    "TransportClosed",
]


class TransportError(Exception):
    """Base class: catch this to handle every transport failure at once."""


class ProtocolError(TransportError):
    """A frame could not be decoded into a valid envelope (or a body could not be encoded).

    ``request_id`` is set when the id could still be read from the broken
    message, so the receiver can answer (server) or fail (client) exactly that
    request instead of leaving it to time out; it is ``None`` otherwise.
    """

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class RequestTimeout(TransportError):
    """A request (or ping) got no reply before its deadline.

    The remote handler may still be running and may still reply; that late
    reply is counted and dropped by the client.
    """

    def __init__(self, message: str, *, request_id: str | None = None, timeout: float | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.timeout = timeout


class RemoteError(TransportError):
    """The server's handler raised; this carries its typed error record.

    ``kind`` is the remote exception's class name (or ``"ProtocolError"`` when
    the server could not read our request), ``retryable`` is what the remote
    side declared via an exception attribute ``retryable``.
    """

    def __init__(self, kind: str, message: str, retryable: bool = False, *, request_id: str | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.request_id = request_id

    @classmethod
    def from_record(cls, record: Any, *, request_id: str | None = None) -> "RemoteError":
        """Build from the ERROR body ``{"kind", "message", "retryable"}``.

        A record of the wrong shape still becomes a RemoteError (kind
        ``"MalformedError"``) rather than a crash in the client's receive
        loop: the caller must get *an* answer for its request.
        """
        if (
            isinstance(record, Mapping)
            and isinstance(record.get("kind"), str)
            and isinstance(record.get("message"), str)
            and isinstance(record.get("retryable"), bool)
        ):
            return cls(record["kind"], record["message"], record["retryable"], request_id=request_id)
        return cls("MalformedError", f"error reply with unexpected body: {record!r:.200}", False, request_id=request_id)

    def to_record(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "retryable": self.retryable}


def error_record(exc: BaseException) -> dict[str, Any]:
    """The typed ERROR body a server sends for a handler exception.

    Defensive on purpose: a broken ``__str__`` or ``retryable`` property must
    not stop the reply, or the client would wait for its full timeout.
    """
    try:
        message = str(exc)
    except Exception:
        message = f"<unprintable {type(exc).__name__}>"
    try:
        retryable = bool(getattr(exc, "retryable", False))
    except Exception:
        retryable = False
    return {"kind": type(exc).__name__, "message": message, "retryable": retryable}


class RequestAbandoned(TransportError):
    """``Client.fail_pending()`` failed this request; the server may still run it and reply (counted late)."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class TransportClosed(TransportError):
    """The endpoint was closed: pending requests fail with this, and so does any later use."""
