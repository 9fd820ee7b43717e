"""Memory with many streams open at once, and what a gateway costs per request right after such a burst.

The burst opens ``count`` streams at the same moment, each on its own connection, so the gateway's upstream pool
grows to as many connections; when they close, the pool keeps its idle keep-alive ones. A client that checks every
idle connection on every request (httpcore does) then costs more per request than before the burst:
:func:`after_burst` measures non-streaming requests/s at concurrency 20 and the gateway's CPU per request again,
straight after, and the ratio to the fresh figure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .load import Target, body_for, workers
from .processes import rss_mb

if TYPE_CHECKING:
    from .scenarios import Gateway, Profile

__all__ = ["AFTER_BURST_CONCURRENCY", "after_burst", "open_streams"]

AFTER_BURST_CONCURRENCY = 20

RpsRun = Callable[[Target, "Profile", int, bool, int | None], Awaitable[tuple[float, int, float | None]]]


async def open_streams(
    target: Target, pid: int, count: int, gap_ms: float, events: int, budget: float
) -> tuple[float, int, int]:
    """RSS of ``pid`` while ``count`` slow streams are open through it: the peak of samples taken every 50 ms
    while the most streams were open. Returns (peak MB, most streams open at a sample, failed requests)."""
    body = body_for(True, {"events": events, "gap_ms": gap_ms, "pre_gap_ms": 0})
    state = {"open": 0, "peak_open": 0, "peak_rss": 0.0}
    sampling = asyncio.Event()

    def opened() -> None:
        state["open"] += 1

    def closed() -> None:
        state["open"] -= 1

    async def sample() -> None:
        stop_at = time.monotonic() + budget
        while not sampling.is_set() and time.monotonic() < stop_at:
            if state["open"] >= state["peak_open"]:
                state["peak_open"] = state["open"]
                state["peak_rss"] = max(state["peak_rss"], rss_mb(pid))
            await asyncio.sleep(0.05)

    async with asyncio.TaskGroup() as group:
        sampler = group.create_task(sample(), name="bench-rss-sampler")
        run = await workers(target, count, 1, budget, body, on_first_body=opened, on_done=closed)
        sampling.set()
        await sampler
    return float(state["peak_rss"]), int(state["peak_open"]), run.errors


async def after_burst(
    gateway: Gateway, profile: Profile, fresh_cpu_ms: float | None, rps: RpsRun
) -> dict[str, Any]:
    """Right after the burst's streams closed: non-streaming requests/s at concurrency 20 and the gateway's CPU
    per request, with the ratio to ``fresh_cpu_ms`` (the same run before the burst)."""
    rate, errors, cpu_ms = await rps(
        gateway.target, profile, AFTER_BURST_CONCURRENCY, False, gateway.server.pid
    )
    ratio = cpu_ms / fresh_cpu_ms if cpu_ms is not None and fresh_cpu_ms else None
    return {
        "streams": profile.open_streams,
        "concurrency": AFTER_BURST_CONCURRENCY,
        "rps": round(rate, 1),
        "cpu_ms_per_request": None if cpu_ms is None else round(cpu_ms, 3),
        "fresh_cpu_ms_per_request": fresh_cpu_ms,
        "cpu_ratio": None if ratio is None else round(ratio, 3),
        "errors": errors,
    }
