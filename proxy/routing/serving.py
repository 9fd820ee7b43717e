"""Which accounts serve which models, from the settings alone: the aliases, the routes and each family's pool, for
`headway models` and the settings page (health and the routing mode decide the rest at request time)."""

from __future__ import annotations

from typing import Any, Literal

from proxy.config.settings import Account, Settings
from proxy.routing.router import pool_for

__all__ = ["model_map"]

Family = Literal["anthropic", "openai"]
_FAMILY_NAMES: dict[Family, str] = {"anthropic": "Claude (Anthropic)", "openai": "OpenAI / ChatGPT"}


def _family_of(model: str) -> Family:
    return "anthropic" if model.startswith("claude") else "openai"


def _names(accounts: list[Account]) -> list[str]:
    return [a.label + ("" if a.enabled else " (disabled)") for a in accounts]


def model_map(settings: Settings) -> dict[str, Any]:
    """Aliases, routes and, for each alias, route and family, the accounts that serve it in order."""
    serving: list[dict[str, Any]] = []
    for alias, target in settings.models.aliases.items():
        family = _family_of(target)
        serving.append(
            {
                "model": alias,
                "real_model": target,
                "accounts": _names(pool_for(settings, family, target, alias)),
            }
        )
    for route in settings.models.routes:
        chosen = [a for ref in route.accounts if (a := settings.account(ref)) is not None]
        serving.append({"model": route.match, "route": True, "accounts": _names(chosen)})
    families: tuple[Family, ...] = ("anthropic", "openai")
    for family in families:
        serving.append(
            {
                "model": f"any other {_FAMILY_NAMES[family]} model",
                "family": family,
                "accounts": _names([a for a in settings.accounts if a.family == family]),
            }
        )
    return {
        "aliases": dict(settings.models.aliases),
        "routes": [r.model_dump(mode="json") for r in settings.models.routes],
        "serving": serving,
    }
