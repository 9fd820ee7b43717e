"""Reading an upstream's answer body when only its beginning matters (an error to relay, log or parse)."""

from __future__ import annotations

import httpx

__all__ = ["read_capped"]


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of ``response``'s body, then the response is closed (the rest is never read).

    A transfer that breaks midway gives what arrived before it: the caller is already handling an error, and a
    partial error body is more use to it than a second error.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    except httpx.HTTPError:
        pass
    finally:
        await response.aclose()
    return b"".join(chunks)[:limit]
