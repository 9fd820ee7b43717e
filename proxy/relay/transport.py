"""The relay as the engine sees it: :class:`RelayOnDemand` (the client, made when the relay is first on) and
:class:`RelayTransport`, the feature whose ``open`` hook sends a request through the user's Worker when the relay
takes it.

The relay client, and the WebSocket library its socket transport uses, are imported and built the first time a
request meets the relay turned on; a gateway whose relay stays off never loads them, and its stats say nothing was
relayed (:func:`proxy.relay.trips.idle_traffic`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from proxy.config.settings import Account, RelaySettings
from proxy.features.base import Feature, TransportFailed
from proxy.providers.base import Incoming, Outgoing
from proxy.relay.trips import idle_traffic, relay_stats

if TYPE_CHECKING:
    from proxy.relay.client import RelayClient

__all__ = ["RelayOnDemand", "RelayTransport"]


class RelayOnDemand:
    """One engine's relay client, built on the engine loop when a request first finds the relay enabled."""

    def __init__(self, settings: Callable[[], RelaySettings], read_secret: Callable[[], str | None]) -> None:
        self._settings = settings
        self._read_secret = read_secret
        self.client: RelayClient | None = None

    @property
    def idle(self) -> bool:
        """The relay is off and has never been on in this run: nothing to send through, nothing to close."""
        return self.client is None and not self._settings().enabled

    def build(self) -> RelayClient:
        if self.client is None:
            from proxy.relay.client import RelayClient

            self.client = RelayClient(self._settings, self._read_secret)
        return self.client

    def stats(self) -> dict[str, Any]:
        """:meth:`RelayClient.stats`; safe from any thread (it never builds the client)."""
        client = self.client
        if client is not None:
            return client.stats()
        return relay_stats(self._settings(), idle_traffic())

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


class RelayTransport(Feature):
    name = "relay"

    def __init__(self, relay: RelayOnDemand, client: Callable[[], httpx.AsyncClient]) -> None:
        self.relay = relay
        self._client = client

    async def open(self, out: Outgoing, request: Incoming, account: Account) -> httpx.Response | None:
        if self.relay.idle:
            return None
        from proxy.relay.client import RelayUnavailable

        try:
            return await self.relay.build().send(self._client(), out, request.session.session_id)
        except RelayUnavailable as exc:
            raise TransportFailed(
                f"the relay failed (relay.fallback_to_direct is off): {exc}", fallback=exc.fallback_to_direct
            ) from exc

    async def aclose(self) -> None:
        await self.relay.aclose()
