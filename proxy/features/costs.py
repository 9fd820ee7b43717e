"""Dollars of finished requests, estimated off the engine loop and handed back on it.

Pricing a request (genai-prices) takes about 0.1 ms of CPU: the request log does it on its writer thread, and the
features that need the dollars on the loop (metrics, member spend caps) ask this object, which prices in the
default executor and calls back on the loop. Every pending estimate is referenced until it is done.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from proxy.features.base import Completed
from proxy.features.pricing import estimate_cost

__all__ = ["CostEstimates"]

log = logging.getLogger("headway.costs")


class CostEstimates:
    def __init__(self) -> None:
        self._pending: set[asyncio.Future[float | None]] = set()

    def submit(self, done: Completed, then: Callable[[float], None]) -> None:
        """Price ``done`` (when it has an account, a model, usage and metered billing) and call ``then(dollars)``
        on the loop; nothing happens for a request that cannot be priced."""
        account, model, usage = done.account, done.model, done.usage
        if account is None or not model or usage is None or done.billing is None:
            return
        provider = "anthropic" if account.family == "anthropic" else "openai"
        price = functools.partial(estimate_cost, provider, model, usage, billing=done.billing)
        future = asyncio.get_running_loop().run_in_executor(None, price)
        self._pending.add(future)

        def finished(f: asyncio.Future[float | None]) -> None:
            self._pending.discard(f)
            if f.cancelled() or f.exception() is not None:
                log.debug("cannot price a request of %s", model, exc_info=f.exception())
                return
            dollars = f.result()
            if dollars:
                then(dollars)

        future.add_done_callback(finished)

    async def drain(self, timeout: float = 2.0) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
