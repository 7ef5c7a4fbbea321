"""Bounded store of replies whose peer was unreachable (EHOSTUNREACH).

Why keep them at all: a driver whose DEALER briefly disconnects (network blip,
process restart with the same ROUTING_ID) would otherwise lose every reply that
finished while it was away, and each of those requests would only surface as
a timeout. Kept replies are sent again as soon as that identity talks to the
server again (see ``Server._redeliver``).

Why bounded: a peer that never comes back must not grow the server's memory
forever. Three bounds, all evicting the oldest entry first and counting it in
``evicted``:

* ``max_count`` replies in total,
* ``max_bytes`` payload bytes in total,
* ``max_age`` seconds since the reply was first kept (checked lazily, on every
  add/take and when stats are read -- there is no timer task).

A reply that is taken for redelivery and fails again is re-added with its
original timestamp but at the back of the eviction order, so its age bound is
enforced a little late; the count and byte bounds still hold exactly.
"""

from __future__ import annotations

from collections import deque

__all__ = ["KeptReplies"]


class _Entry:
    __slots__ = ("identity", "request_id", "payload", "t", "alive")

    def __init__(self, identity: bytes, request_id: str, payload: bytes, t: float) -> None:
        self.identity = identity
        self.request_id = request_id
        self.payload = payload
        self.t = t
        self.alive = True


class KeptReplies:
    """identity -> replies in arrival order, with global oldest-first eviction."""

    def __init__(self, *, max_count: int, max_bytes: int, max_age: float) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._by_peer: dict[bytes, deque[_Entry]] = {}
        # Global insertion order; entries taken for redelivery stay here marked
        # dead and are skipped lazily, so take() is O(entries of that peer).
        self._order: deque[_Entry] = deque()
        self._count = 0
        self._bytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, identity: object) -> bool:
        # Hot path (every received message): a plain dict lookup.
        return identity in self._by_peer

    @property
    def nbytes(self) -> int:
        return self._bytes

    def add(self, identity: bytes, request_id: str, payload: bytes, t: float, *, now: float) -> None:
        entry = _Entry(identity, request_id, payload, t)
        self._by_peer.setdefault(identity, deque()).append(entry)
        self._order.append(entry)
        self._count += 1
        self._bytes += len(payload)
        self.expire(now)
        while self._count > self.max_count or self._bytes > self.max_bytes:
            self._evict_oldest()

    def take(self, identity: bytes, *, now: float) -> list[tuple[str, bytes, float]]:
        """Remove and return this peer's replies, oldest first."""
        self.expire(now)
        entries = self._by_peer.pop(identity, None)
        if not entries:
            return []
        out = []
        for entry in entries:
            entry.alive = False
            self._count -= 1
            self._bytes -= len(entry.payload)
            out.append((entry.request_id, entry.payload, entry.t))
        return out

    def expire(self, now: float) -> None:
        cutoff = now - self.max_age
        order = self._order
        while order and (not order[0].alive or order[0].t < cutoff):
            if order[0].alive:
                self._evict_oldest()
            else:
                order.popleft()

    def _evict_oldest(self) -> None:
        order = self._order
        while order:
            entry = order.popleft()
            if not entry.alive:
                continue
            peer = self._by_peer[entry.identity]
            # Per-peer order is the same insertion order, so the globally oldest
            # live entry of this peer is the head of its deque.
            head = peer.popleft()
            assert head is entry
            if not peer:
                del self._by_peer[entry.identity]
            entry.alive = False
            self._count -= 1
            self._bytes -= len(entry.payload)
            self.evicted += 1
            return
