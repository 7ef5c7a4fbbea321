"""The wire protocol, all of it, in one place.

Frames, as libzmq moves them::

    Client (DEALER) sends exactly ONE frame:      [payload]
    Server (ROUTER) receives two frames:          [identity, payload]
        identity  - added by libzmq: the DEALER's ROUTING_ID (stable per Client)
        payload   - the bytes the DEALER sent
    Server (ROUTER) replies with two frames:      [identity, payload]
        libzmq strips identity and routes payload to that peer
    Client (DEALER) receives ONE frame:           [payload]

    payload = msgpack array [version, kind, request_id, body]
        version     int, == VERSION (1); anything else is rejected, never guessed at
        kind        str, one of REQUEST "req" | REPLY "rep" | ERROR "err" | PING "ping" | PONG "pong"
        request_id  str, chosen by the client, echoed unchanged by the server
        body        any msgpack value: None, bool, int, float, str, bytes, list, dict
                    (ERROR body: {"kind": str, "message": str, "retryable": bool})

There is no empty delimiter frame (that is REQ/REP's envelope, not ours) and no
multi-frame body: one frame keeps "is this message complete" trivial.

Decoding is deliberately strict and safe, because a server must survive any
bytes a peer sends:

* ``raw=False``: msgpack str decodes to ``str``; ``bin`` stays ``bytes``
  (encoding uses ``use_bin_type=True`` so the two never mix).
* Extension types are refused (``ext_hook`` raises); msgpack's built-in
  Timestamp (ext -1), which bypasses ``ext_hook``, is looked for and refused
  too. Nothing is ever unpickled.
* ``strict_map_key=False``: integer/float/None map keys are allowed. Keeping
  msgpack's strict default would make encode and decode asymmetric (msgpack
  encodes ``{0: ...}`` happily, strict decode refuses it), which turns into a
  reply the client cannot read. Peers are our own processes; message size is
  bounded by the socket's MAXMSGSIZE. Unhashable keys (arrays) still fail and
  become a ProtocolError.
* Tuples are encoded as arrays and come back as lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import ProtocolError

__all__ = [
    "VERSION",
    "REQUEST",
    "REPLY",
    "ERROR",
    "PING",
    "PONG",
    "KINDS",
    "Envelope",
    "encode",
    "decode",
    "error_body",
]

VERSION = 1

REQUEST = "req"
REPLY = "rep"
ERROR = "err"
PING = "ping"
PONG = "pong"
KINDS = frozenset({REQUEST, REPLY, ERROR, PING, PONG})

# The three msgpack encodings of a Timestamp (ext type -1): fixext4, fixext8, ext8 len 12.
_TIMESTAMP_MARKERS = (b"\xd6\xff", b"\xd7\xff", b"\xc7\x0c\xff")


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message. Immutable so a kept (undeliverable) reply cannot change under us."""

    kind: str
    request_id: str
    body: Any = None
    version: int = VERSION


def error_body(kind: str, message: str, retryable: bool = False) -> dict[str, Any]:
    """The typed record an ERROR envelope carries."""
    return {"kind": kind, "message": message, "retryable": bool(retryable)}


def encode(env: Envelope) -> bytes:
    """Envelope -> payload bytes. A body msgpack cannot represent raises ProtocolError."""
    try:
        return msgpack.packb(
            [env.version, env.kind, env.request_id, env.body], use_bin_type=True, datetime=False
        )
    except (TypeError, ValueError, OverflowError) as exc:
        rid = env.request_id if isinstance(env.request_id, str) else None
        raise ProtocolError(f"cannot encode body: {exc}", request_id=rid) from exc


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def _has_timestamp(obj: Any) -> bool:
    """Walk a decoded value looking for msgpack.Timestamp (only run when a marker byte pair is present)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, msgpack.Timestamp):
            return True
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return False


def _salvage_request_id(data: bytes) -> str | None:
    """Read just the header of a message whose full decode failed.

    Streams the array header and the first three elements, so a broken body
    still yields the request id and the request can be answered/failed
    instead of hanging until its timeout.
    """
    try:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, ext_hook=_reject_ext, max_buffer_size=len(data) + 1)
        unpacker.feed(data)
        if unpacker.read_array_header() < 3:
            return None
        unpacker.skip()  # version
        unpacker.skip()  # kind
        rid = unpacker.unpack()
    except Exception:  # any failure here just means "not readable"
        return None
    return rid if isinstance(rid, str) else None


def decode(data: bytes) -> Envelope:
    """Payload bytes -> Envelope, or ProtocolError (``request_id`` set when readable)."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_reject_ext, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types (ValueError, TypeError, ExtraData, ...)
        raise ProtocolError(f"undecodable payload: {exc}", request_id=_salvage_request_id(data)) from exc

    if not isinstance(obj, list) or len(obj) != 4:
        rid = obj[2] if isinstance(obj, list) and len(obj) >= 3 and isinstance(obj[2], str) else None
        raise ProtocolError(f"payload must be a 4-element array, got {type(obj).__name__}", request_id=rid)
    version, kind, request_id, body = obj
    rid = request_id if isinstance(request_id, str) else None
    if rid is None:
        raise ProtocolError(f"request_id must be str, got {type(request_id).__name__}")
    # bool is an int subclass: True == 1 must not pass as version 1.
    if type(version) is not int or version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r} (expected {VERSION})", request_id=rid)
    if not isinstance(kind, str) or kind not in KINDS:
        raise ProtocolError(f"unknown kind {kind!r}", request_id=rid)
    # 0xff is the second byte of every Timestamp marker; a memchr-speed test for
    # it skips the slower marker search for most payloads (UTF-8 text never
    # contains 0xff). The walk only runs when a marker is actually present.
    if b"\xff" in data and any(m in data for m in _TIMESTAMP_MARKERS) and _has_timestamp(body):
        raise ProtocolError("msgpack extension type -1 (Timestamp) is not allowed", request_id=rid)
    return Envelope(kind, rid, body, version)
