"""The accounts part of the status snapshot: the one shape `headway status --json`, /status, the tray and the page read."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from proxy.config.settings import Account, Settings
from proxy.providers.base import ProviderAdapter
from proxy.providers.registry import build_adapters
from proxy.routing.health import Block
from proxy.routing.state import RuntimeState

__all__ = ["status_snapshot"]


def _window_json(window: Any, now: float) -> dict[str, Any]:
    fraction = window.remaining_fraction
    return {
        "name": window.name,
        "limit": window.limit,
        "remaining": window.remaining,
        "used_percent": window.used_percent,
        "remaining_percent": None if fraction is None else round(fraction * 100, 1),
        "resets_at": window.resets_at,
        "resets_in_seconds": None if window.resets_at is None else max(0.0, round(window.resets_at - now, 1)),
        "window_minutes": window.window_minutes,
        "current": window.is_current(now),
    }


def status_snapshot(
    settings: Settings,
    state: RuntimeState,
    now: float,
    fingerprints: dict[str, str],
    missing: set[str] | None = None,
    adapters: Mapping[str, ProviderAdapter] | None = None,
    budgets: Mapping[str, dict[str, Any]] | None = None,
    policy: Callable[[Account], Block | None] | None = None,
) -> list[dict[str, Any]]:
    """Accounts with health, quota windows and cooldowns — the shape `headway status --json` and /status share.

    ``budgets`` is the budgets feature's snapshot (:meth:`proxy.features.budgets.Budgets.snapshot`): an account
    over its budget shows as ``over_budget`` like any other block, and each budgeted account carries ``budget``.
    ``policy`` names accounts the gateway will not use whatever their health (a ChatGPT account in a shared
    deployment): its block is shown first.
    """
    adapters = build_adapters() if adapters is None else adapters
    accounts = []
    for account in settings.accounts:
        block = policy(account) if policy is not None else None
        if block is None:
            block = state.health.block(account.id, now, fingerprints.get(account.id))
        if block is None and missing and account.id in missing:
            block = adapters[account.kind].missing_secret(account)
        snapshot = state.quota.get(account.id)
        if block is None:
            killed = state.quota.below_killswitch(account.id, account.killswitch, now)
            if killed is not None:
                block = Block("killswitch", f"{killed.name} window below the killswitch", killed.resets_at)
        budget = (budgets or {}).get(account.id)
        if block is None and budget is not None and budget["state"] == "over_budget":
            block = Block("over_budget", budget["detail"], budget["blocked_until"])
        if not account.enabled:
            health = "disabled"
        elif block is not None:
            health = block.state
        else:
            health = "healthy"
        record = state.health.accounts.get(account.id)
        accounts.append(
            {
                "id": account.id,
                "label": account.label,
                "kind": account.kind,
                "family": account.family,
                "plan_type": (snapshot.plan_type if snapshot else None) or account.plan_type,
                "email": account.email,
                "enabled": account.enabled,
                "health": health,
                "detail": block.reason if block else None,
                "blocked_until": block.until if block else None,
                "blocked_for_seconds": None
                if not (block and block.until)
                else max(0.0, round(block.until - now, 1)),
                "last_error": record.last_error if record else None,
                "last_ok_at": record.last_ok_at if record else None,
                "last_used_at": record.last_used_at if record else None,
                "budget": budget,
                "quota": None
                if snapshot is None
                else {
                    "updated_at": snapshot.updated_at,
                    "plan_type": snapshot.plan_type,
                    "windows": [_window_json(w, now) for w in snapshot.windows],
                },
            }
        )
    return accounts
