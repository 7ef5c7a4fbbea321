"""ZMTP heartbeat options, shared by Server and Client (seconds in, libzmq's units out)."""

from __future__ import annotations

import zmq

__all__ = ["set_heartbeats"]


def set_heartbeats(sock: zmq.Socket, ivl: float | None, timeout: float | None, ttl: float | None = None) -> None:
    """Set HEARTBEAT_IVL / HEARTBEAT_TIMEOUT (and HEARTBEAT_TTL); None or 0 leaves an option off.

    Values are clamped up, never down to 0: libzmq reads 0 as "off", so a tiny
    value must not silently disable liveness. TTL is kept in deciseconds by
    libzmq, hence its 100 ms floor.
    """
    if ivl:
        sock.setsockopt(zmq.HEARTBEAT_IVL, max(1, int(ivl * 1000)))
        if timeout:
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(1, int(timeout * 1000)))
    if ttl:
        sock.setsockopt(zmq.HEARTBEAT_TTL, max(100, int(ttl * 1000)))
