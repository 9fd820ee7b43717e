"""`headway models`: model aliases, model routes, and which accounts serve which models (from the settings)."""

from __future__ import annotations

import json
from typing import Any, Literal

import click

from proxy.config.settings import Account, Settings
from proxy.routing.router import pool_for

from .root import cli, env_paths, load_store

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


def format_model_map(data: dict[str, Any]) -> str:
    lines = ["Aliases:"]
    lines += [f"  {alias} → {target}" for alias, target in data["aliases"].items()] or ["  none"]
    lines.append("Routes (the first match wins):")
    lines += [f"  {r['match']} → {', '.join(r['accounts'])}" for r in data["routes"]] or ["  none"]
    lines.append("Who serves what (in fallback order; the routing mode and health decide at request time):")
    for item in data["serving"]:
        name = item["model"] + (f" ({item['real_model']})" if item.get("real_model") else "")
        lines.append(f"  {name}: {', '.join(item['accounts']) or 'no account'}")
    return "\n".join(lines)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json: bool) -> None:
    """Model aliases, model routes, and which accounts serve each model."""
    data = model_map(load_store(env_paths()).current)
    click.echo(json.dumps(data, indent=2) if as_json else format_model_map(data))
