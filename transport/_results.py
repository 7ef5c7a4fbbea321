"""Bounded cache of finished replies, keyed by request id (makes requests idempotent).

Why: a caller that got no reply cannot tell "the request was lost" from "the
reply was lost" -- libzmq loses a reply sent in the ~50 ms before it notices a
dead connection, and a driver may resend after a reconnect or a timeout. If
the server ran the handler again for every resend, a retry could do the work
twice (two rollouts, two billed LLM calls). So the server remembers each
finished reply by its request id for a while and answers a resend from here
without running the handler. (Requests still *running* are tracked by the
server itself: a resend of one of those just waits for the same result.)

Ids are chosen by the caller and must be globally unique; the cache is per
server, so moving a request to another server runs it there (at-least-once
overall, exactly-once per server while the entry lives).

Why bounded: every reply would otherwise stay in memory forever. Three bounds,
all evicting the oldest (earliest finished) entry first and counting it in
``evicted``: ``max_count`` entries, ``max_bytes`` payload bytes, ``max_age``
seconds since the reply was made (checked lazily on put/get and when stats are
read -- no timer task). A reply larger than ``max_bytes`` on its own is
evicted at once; ``max_count=0`` turns caching off.

ERROR replies the handler marked ``retryable`` are not cached (the server
skips them): resending such an id runs the handler again, which is what
"retryable" asks for. Non-retryable errors are answers like any other.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["ResultCache"]


class ResultCache:
    """request_id -> encoded reply payload, oldest first."""

    def __init__(self, *, max_count: int, max_bytes: int, max_age: float) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.max_age = max_age
        # Insertion order == completion order, so the head is always the oldest.
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, request_id: str, *, now: float) -> bytes | None:
        self.expire(now)
        entry = self._entries.get(request_id)
        return None if entry is None else entry[0]

    def put(self, request_id: str, payload: bytes, *, now: float) -> None:
        old = self._entries.pop(request_id, None)
        if old is not None:  # an evicted-then-rerun id, or a retryable error's rerun
            self._bytes -= len(old[0])
        self._entries[request_id] = (payload, now)
        self._bytes += len(payload)
        self.expire(now)
        while self._entries and (len(self._entries) > self.max_count or self._bytes > self.max_bytes):
            self._evict_oldest()

    def expire(self, now: float) -> None:
        cutoff = now - self.max_age
        entries = self._entries
        while entries and next(iter(entries.values()))[1] < cutoff:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        _, (payload, _) = self._entries.popitem(last=False)
        self._bytes -= len(payload)
        self.evicted += 1
