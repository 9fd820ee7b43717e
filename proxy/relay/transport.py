"""The relay as a feature: its ``open`` hook sends a request through the user's Worker when the relay takes it."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from proxy.config.settings import Account
from proxy.features.base import Feature, TransportFailed
from proxy.providers.base import Incoming, Outgoing
from proxy.relay.client import RelayClient, RelayUnavailable

__all__ = ["RelayTransport"]


class RelayTransport(Feature):
    name = "relay"

    def __init__(self, relay: RelayClient, client: Callable[[], httpx.AsyncClient]) -> None:
        self.relay = relay
        self._client = client

    async def open(self, out: Outgoing, request: Incoming, account: Account) -> httpx.Response | None:
        try:
            return await self.relay.send(self._client(), out, request.session.session_id)
        except RelayUnavailable as exc:
            raise TransportFailed(
                f"the relay failed (relay.fallback_to_direct is off): {exc}", fallback=exc.fallback_to_direct
            ) from exc

    async def aclose(self) -> None:
        await self.relay.aclose()
