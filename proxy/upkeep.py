"""Account upkeep on the engine loop: sign-ins refreshed ahead of expiry, usage endpoints polled while idle.

Every few seconds it also reads the enabled accounts' secrets through the cache, so the status (tray, page) knows an
account whose key or login is missing before a request finds out. What each provider needs is asked of its
adapter (``oauth``, ``polls_usage``, ``usage_poll_seconds``, ``poll_usage``); nothing here names a kind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

import httpx

from proxy.auth.credentials import Credentials
from proxy.config.settings import Account, Settings, UpstreamSettings
from proxy.providers.base import ProviderAdapter
from proxy.routing.quota import QuotaBook

__all__ = ["AccountUpkeep"]

log = logging.getLogger("headway.engine")


class AccountUpkeep:
    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        upstreams: Callable[[], UpstreamSettings],
        adapters: Mapping[str, ProviderAdapter],
        credentials: Credentials,
        quota: QuotaBook,
        client: Callable[[], httpx.AsyncClient | None],
        on_dirty: Callable[[], None],
        interval: float = 5.0,
    ) -> None:
        self._settings = settings
        self._upstreams = upstreams
        self._adapters = adapters
        self._credentials = credentials
        self._quota = quota
        self._client = client
        self._dirty = on_dirty
        self._interval = interval
        self._polled: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.tick()

    async def tick(self) -> None:
        settings = self._settings()
        enabled = [a for a in settings.accounts if a.enabled]
        await self._credentials.fingerprints_of(enabled)
        signed_in = [a for a in enabled if self._adapters[a.kind].oauth]
        if signed_in and self._credentials.tokens is not None:
            await self._credentials.tokens.refresh_due([a.id for a in signed_in])
        now = time.time()
        for account in self.polled_accounts():
            interval = self._adapters[account.kind].usage_poll_seconds(settings)
            if now - self._polled.get(account.id, 0.0) >= interval:
                self._polled[account.id] = now
                await self.poll(account)

    def polled_accounts(self) -> list[Account]:
        """Enabled accounts whose provider has a usage endpoint to poll."""
        return [a for a in self._settings().accounts if a.enabled and self._adapters[a.kind].polls_usage]

    async def poll(self, account: Account) -> bool:
        """Read one account's usage endpoint (through its adapter); update its quota windows. True on success."""
        client = self._client()
        if client is None:
            return False
        token = await self._credentials.credential(account)
        if not token:
            return False
        try:
            windows, plan = await self._adapters[account.kind].poll_usage(
                client, account, token, self._upstreams()
            )
        except (httpx.HTTPError, ValueError) as exc:
            log.info("usage poll for %s failed: %s", account.id, exc)
            return False
        if self._quota.update(account.id, windows, time.time(), plan):
            self._dirty()
        return True

    async def refresh_quota(self) -> None:
        """Poll every account that has a usage endpoint, now (`headway status --refresh`, the page's button)."""
        await asyncio.gather(*(self.poll(a) for a in self.polled_accounts()))
