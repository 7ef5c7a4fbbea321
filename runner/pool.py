"""The driver's view of its env servers: who is up, who gets the next request, who is restarting.

One loop shape per server (the Paranoid Pirate's): ping on the request socket every interval.
A missed ping alone proves little (a server running thousands of rollouts on an instant model
answers late), so the pool then asks Ray's control store whether the actor's process is gone;
if it is, or if the server stays silent past `hang_timeout`, it is declared down. Its client is
closed, which fails every request pending on it with `TransportClosed`; the callers resend
those requests (same ids) to servers that are up. Meanwhile the pool gets the actor a new
incarnation (Ray restarts a dead actor; a hung one is killed so Ray restarts it), fetches the
new address, reconnects, and puts the server back. A server that cannot come back is retired
and its share of the work goes to the others.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from rayeval.transport import Client, TransportError

from .env_server import EnvServerHandle
from .errors import RayevalError, ServerStartError

log = logging.getLogger(__name__)


class NoServers(RayevalError):
    """Every env server is down for good, or none came back before the deadline."""


@dataclass
class ServerSlot:
    handle: EnvServerHandle
    client: Client | None = None
    state: str = "starting"  # starting -> up -> restarting -> up ... | retired
    restarts: int = 0
    retired_clients: list[Client] = field(default_factory=list)

    @property
    def index(self) -> int:
        return self.handle.index


@dataclass
class PoolEvents:
    declared_down: int = 0
    restarts: int = 0
    retired: int = 0


class ServerPool:
    def __init__(
        self,
        handles: list[EnvServerHandle],
        *,
        ping_interval: float = 0.5,
        ping_timeout: float = 1.0,
        hang_timeout: float = 30.0,
        restart_timeout: float = 180.0,
    ):
        self.slots = [ServerSlot(handle) for handle in handles]
        self.events = PoolEvents()
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._hang_timeout = hang_timeout
        self._restart_timeout = restart_timeout
        self._changed = asyncio.Condition()
        self._monitors: list[asyncio.Task[None]] = []

    async def start(self, timeout: float) -> None:
        addresses = await asyncio.gather(*(s.handle.start(timeout) for s in self.slots))
        for slot, address in zip(self.slots, addresses):
            slot.client = Client(address)
            slot.state = "up"
        self._monitors = [asyncio.create_task(self._monitor(slot)) for slot in self.slots]

    def _up(self) -> list[ServerSlot]:
        return [s for s in self.slots if s.state == "up" and s.client is not None]

    async def acquire(self, timeout: float) -> ServerSlot:
        """The up server with the fewest outstanding requests; waits while all are restarting."""
        up = self._up()
        if up:
            return min(up, key=lambda s: s.client.outstanding)  # type: ignore[union-attr]
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(
                        lambda: bool(self._up()) or all(s.state == "retired" for s in self.slots)
                    ),
                    timeout,
                )
            except asyncio.TimeoutError as exc:
                raise NoServers(f"no env server came back within {timeout:.0f}s") from exc
        up = self._up()
        if not up:
            raise NoServers("every env server is down and could not be restarted")
        return min(up, key=lambda s: s.client.outstanding)  # type: ignore[union-attr]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _monitor(self, slot: ServerSlot) -> None:
        """Ping; on a miss, ask Ray whether the process is gone. A dead or restarted actor is
        recovered at once; a live one that does not answer is only busy, unless it stays
        silent past `hang_timeout` (then it is hung, and killed so Ray restarts it)."""
        silent_since: float | None = None
        loop = asyncio.get_running_loop()
        while slot.state != "retired":
            await asyncio.sleep(self._ping_interval)
            if slot.state != "up" or slot.client is None:
                continue
            try:
                await slot.client.ping(timeout=self._ping_timeout)
                silent_since = None
                continue
            except TransportError:
                silent_since = silent_since or loop.time()
            gone = slot.handle.incarnation_changed()
            hung = loop.time() - silent_since > self._hang_timeout
            if gone or hung:
                log.info("env server %d %s", slot.index, "is gone" if gone else "is hung")
                silent_since = None
                await self._recover(slot)

    async def _recover(self, slot: ServerSlot) -> None:
        """Declare the server down, fail its pending work over, and bring it back if possible."""
        self.events.declared_down += 1
        slot.state = "restarting"
        old, slot.client = slot.client, None
        if old is not None:
            slot.retired_clients.append(old)
            await old.close()  # pending requests raise TransportClosed; callers resend them
        try:
            address = await slot.handle.restart(self._restart_timeout)
        except ServerStartError as exc:
            log.warning("env server %d retired: %s", slot.index, exc)
            slot.state = "retired"
            self.events.retired += 1
        else:
            slot.client = Client(address)
            slot.restarts += 1
            self.events.restarts += 1
            slot.state = "up"
        await self._notify()

    def late_replies(self) -> int:
        """Replies that arrived for requests nobody waited for any more (dropped, counted)."""
        clients = [c for s in self.slots for c in [s.client, *s.retired_clients] if c is not None]
        return sum(c.stats.late for c in clients)

    def servers_info(self) -> list[dict[str, Any]]:
        return [
            {"index": s.index, "state": s.state, "restarts": s.restarts, **s.handle.info}
            for s in self.slots
        ]

    async def close(self) -> None:
        for task in self._monitors:
            task.cancel()
        await asyncio.gather(*self._monitors, return_exceptions=True)
        for slot in self.slots:
            if slot.client is not None:
                await slot.client.close()
