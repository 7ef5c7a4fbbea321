"""A handler that holds every request until the test releases it (to keep work in flight)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


def gated_echo() -> tuple[Callable[[Any], Awaitable[Any]], asyncio.Event]:
    release = asyncio.Event()

    async def handler(body: Any) -> Any:
        await release.wait()
        return body

    return handler, release
