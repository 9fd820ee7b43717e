"""What the forwarder sends upstream for an account: its API key, or a fresh sign-in access token.

Secrets come through the :class:`~proxy.secrets.cache.SecretCache`; a sign-in account's stored tokens go through the
:class:`~proxy.auth.tokens.TokenManager`, which refreshes them when due. A refresh refused for good marks the
account as needing login (with the adapter's hint); a failing refresh is noted and the stored tokens are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from proxy.auth.errors import OAuthError, PermanentAuthError
from proxy.auth.tokens import TokenManager
from proxy.config.settings import Account
from proxy.providers.base import ProviderAdapter
from proxy.routing.health import HealthBook
from proxy.secrets.cache import SecretCache, fingerprint

__all__ = ["Credentials"]

log = logging.getLogger("headway.credentials")


class Credentials:
    def __init__(
        self,
        secrets: SecretCache,
        adapters: Mapping[str, ProviderAdapter],
        health: HealthBook,
        on_change: Callable[[], None],
    ) -> None:
        self.secrets = secrets
        self.tokens: TokenManager | None = None  # set once the engine's HTTP client exists
        self._adapters = adapters
        self._health = health
        self._changed = on_change

    async def credential(self, account: Account) -> str | None:
        """The secret to send upstream, or None when there is none usable (the account is then skipped)."""
        raw = await self.secrets.get(account.id)
        if not raw or not self._adapters[account.kind].oauth:
            return raw
        assert self.tokens is not None
        adapter = self._adapters[account.kind]
        try:
            return await self.tokens.access_token(account.id)
        except PermanentAuthError as exc:
            self._health.fail_auth(
                account.id, f"{adapter.relogin_hint} ({exc})", fingerprint(raw), needs_login=True
            )
            self._changed()
            log.warning("account %s needs login: %s", account.id, exc)
        except OAuthError as exc:
            self._health.of(account.id).last_error = f"token refresh failing: {exc}"
            self._changed()
            log.warning("account %s: token refresh failing: %s", account.id, exc)
        return None

    async def fingerprints_of(self, accounts: list[Account]) -> dict[str, str]:
        return await self.secrets.fingerprints_of(accounts)
