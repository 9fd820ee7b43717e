"""Which accounts a request may use, in which order.

Each family (Anthropic Messages; OpenAI Responses / Chat, served by OpenAI API keys and ChatGPT accounts) has its
own pool: the enabled accounts of that family in settings order. The routing mode rearranges the pool:

- ``main-first``: the first account always goes first; the others are fallbacks in order.
- ``fallback-first``: the first account goes last — the others carry the load and the main account is kept in
  reserve.
- ``sticky``: a session stays on the account that last served it while that account is usable (prompt caches live
  per account); a new session starts like main-first.

Blocked accounts (cooling down, exhausted, failing auth, needing login, below their killswitch) are left out. Accounts with a quota window below the
configured minimum share are moved to the end rather than dropped: a request is better served by a low account
than refused.

A model route (settings ``models.routes``) narrows the pool first: the first route whose glob matches the request's
model — the real one after alias resolution, or the name the agent sent — keeps only the route's accounts, in the
route's order, and the mode then arranges that pool as it would the whole family's. No matching route: the family's
pool. Routes live here rather than in a feature's ``allows`` because they decide the order, not just who is left out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from proxy.config.settings import Account, ModelRoute, Settings
from proxy.routing.health import Block, HealthBook
from proxy.routing.quota import QuotaBook

__all__ = ["Candidates", "Router", "Skipped", "pool_for", "route_for"]

Family = Literal["anthropic", "openai"]


@dataclass(frozen=True)
class Skipped:
    account: Account
    block: Block


@dataclass(frozen=True)
class Candidates:
    usable: list[Account]
    skipped: list[Skipped]


def route_for(settings: Settings, model: str | None, requested: str | None = None) -> ModelRoute | None:
    """The first route whose glob matches ``model`` (or the name the agent sent), or None."""
    names = [n for n in (model, requested) if n]
    return next((r for r in settings.models.routes if any(fnmatchcase(n, r.match) for n in names)), None)


def pool_for(
    settings: Settings, family: Family, model: str | None = None, requested: str | None = None
) -> list[Account]:
    """The accounts of ``family`` that may serve ``model``, in routing order before health and mode."""
    route = route_for(settings, model, requested)
    if route is None:
        return [a for a in settings.accounts if a.family == family]
    chosen: dict[str, Account] = {}
    for ref in route.accounts:
        account = settings.account(ref)
        if account is not None and account.family == family:
            chosen.setdefault(account.id, account)
    return list(chosen.values())


# A pin kept on the same account is told to the listener again only after this long (its idle clock moves on the
# other replicas too, at a fraction of the traffic of telling every request).
PIN_RETELL_SECONDS = 30.0


class Router:
    """Holds sticky-session pins (bounded, idle-expiring); the rest is derived from settings and health."""

    def __init__(self, max_pins: int = 10_000) -> None:
        self._pins: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._max_pins = max_pins
        # Told of a new or moved pin (team mode publishes it); quick, never raises; None on a lone gateway.
        self.listener: Callable[[str, str, float], None] | None = None

    def candidates(
        self,
        settings: Settings,
        family: Family,
        *,
        session_id: str | None,
        now: float,
        health: HealthBook,
        quota: QuotaBook,
        fingerprints: dict[str, str] | None = None,
        model: str | None = None,
        requested_model: str | None = None,
    ) -> Candidates:
        pool = pool_for(settings, family, model, requested_model)
        usable: list[Account] = []
        low: list[Account] = []
        skipped: list[Skipped] = []
        for account in pool:
            if not account.enabled:
                skipped.append(Skipped(account, Block("disabled", "disabled in settings")))
                continue
            block = health.block(account.id, now, (fingerprints or {}).get(account.id))
            if block is None:
                killed = quota.below_killswitch(account.id, account.killswitch, now)
                if killed is not None:
                    left = (killed.remaining_fraction or 0.0) * 100
                    limit = (account.killswitch or {}).get(killed.name, 0)
                    block = Block(
                        "killswitch",
                        f"{killed.name} window {left:.0f}% left, below the killswitch {limit:g}%",
                        killed.resets_at,
                    )
            if block is not None:
                skipped.append(Skipped(account, block))
                continue
            minimum = (
                account.min_remaining_percent
                if account.min_remaining_percent is not None
                else settings.routing.min_remaining_percent
            )
            (low if quota.below_minimum(account.id, minimum, now) else usable).append(account)

        mode = settings.routing.mode
        if mode == "fallback-first" and len(usable) > 1 and pool and usable[0].id == pool[0].id:
            usable = [*usable[1:], usable[0]]
        elif mode == "sticky" and session_id:
            pinned = self.pinned(session_id, now, settings.routing.sticky_idle_minutes * 60)
            for index, account in enumerate(usable):
                if account.id == pinned:
                    usable.insert(0, usable.pop(index))
                    break
        return Candidates(usable=usable + low, skipped=skipped)

    def pinned(self, session_id: str, now: float, idle_limit: float) -> str | None:
        entry = self._pins.get(session_id)
        if entry is None:
            return None
        account_id, last = entry
        if now - last > idle_limit:
            del self._pins[session_id]
            return None
        return account_id

    def pin(self, session_id: str | None, account_id: str, now: float) -> None:
        if not session_id:
            return
        previous = self._pins.get(session_id)
        self._pins[session_id] = (account_id, now)
        self._pins.move_to_end(session_id)
        while len(self._pins) > self._max_pins:
            self._pins.popitem(last=False)
        if self.listener is not None and (
            previous is None or previous[0] != account_id or now - previous[1] >= PIN_RETELL_SECONDS
        ):
            self.listener(session_id, account_id, now)

    def adopt(self, session_id: str, account_id: str, at: float) -> None:
        """A pin another replica made (team mode): taken when newer than ours; the listener is not told."""
        previous = self._pins.get(session_id)
        if previous is not None and previous[1] >= at:
            return
        self._pins[session_id] = (account_id, at)
        self._pins.move_to_end(session_id)
        while len(self._pins) > self._max_pins:
            self._pins.popitem(last=False)

    def pins(self) -> list[tuple[str, str, float]]:
        """Every pin as (session, account, last used), oldest first."""
        return [(session, account, at) for session, (account, at) in self._pins.items()]

    def to_json(self) -> dict[str, list[object]]:
        return {k: [a, t] for k, (a, t) in self._pins.items()}

    def load_json(self, data: object) -> None:
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, list) and len(value) == 2:
                    self._pins[str(key)] = (str(value[0]), float(value[1]))
