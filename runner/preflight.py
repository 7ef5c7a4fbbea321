"""A pre-flight probe of the model endpoint, so a typo in -b fails in seconds, not per rollout.

Only "cannot connect at all" is fatal. Any HTTP answer, even 401 or 404 (some servers have no
/models route), proves the endpoint is there; per-call failures then become error rows.
"""

from __future__ import annotations

import aiohttp

from .errors import EndpointUnreachable

PROBE_TIMEOUT_S = 10.0


async def probe_endpoint(base_url: str, timeout: float = PROBE_TIMEOUT_S) -> int:
    """GET {base_url}/models; return the HTTP status, or raise EndpointUnreachable."""
    url = base_url.rstrip("/") + "/models"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url) as response:
                return response.status
    except TimeoutError as exc:
        raise EndpointUnreachable(
            f"model endpoint {base_url} did not answer within {timeout:.0f}s"
        ) from exc
    except aiohttp.ClientError as exc:
        reason = str(exc) or type(exc).__name__
        raise EndpointUnreachable(f"cannot reach model endpoint {base_url}: {reason}") from exc
