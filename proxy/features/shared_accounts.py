"""No personal subscription in a shared deployment: ChatGPT accounts are skipped when the gateway is shared.

A gateway is shared when it uses team mode's shared state or listens beyond loopback
(:func:`proxy.gateway.remote.shared_deployment`). OpenAI's terms forbid sharing an account, and teams that shared
one have been banned: such a gateway serves the organisation's API keys only, and says so for every ChatGPT
account it skips (in status, in the log, and in the error an agent gets when nothing else is left).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.features.base import Feature
from proxy.routing.health import Block

if TYPE_CHECKING:
    from proxy.config.settings import Account, Settings
    from proxy.providers.base import Incoming

__all__ = ["PERSONAL_KINDS", "SHARED_REFUSAL", "SharedAccounts"]

log = logging.getLogger("headway.team")

PERSONAL_KINDS = frozenset({"chatgpt"})
SHARED_REFUSAL = (
    "a ChatGPT account is a personal subscription: OpenAI's terms forbid sharing one (teams that did were "
    "banned), so a shared gateway (team mode or remote binding) never uses it — add an OpenAI API key instead"
)


class SharedAccounts(Feature):
    name = "shared_accounts"

    def __init__(self, shared: Callable[[], bool]) -> None:
        self._shared = shared
        self._warned: set[str] = set()

    def configure(self, settings: Settings) -> None:
        if not self._shared():
            return
        for account in settings.accounts:
            if account.kind in PERSONAL_KINDS and account.enabled and account.id not in self._warned:
                self._warned.add(account.id)
                log.warning("not using %s in this shared gateway: %s", account.label, SHARED_REFUSAL)

    def block(self, account: Account) -> Block | None:
        """Why this gateway never uses ``account`` (also shown in status), or None."""
        if account.kind in PERSONAL_KINDS and self._shared():
            return Block("not_shared", SHARED_REFUSAL)
        return None

    def allows(self, request: Incoming, account: Account, now: float) -> Block | None:
        return self.block(account)
