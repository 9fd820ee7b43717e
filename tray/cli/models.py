"""`headway models`: model aliases, model routes, and which accounts serve which models (from the settings)."""

from __future__ import annotations

import json
from typing import Any

import click

from proxy.routing.serving import model_map

from .root import cli, env_paths, load_store


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
