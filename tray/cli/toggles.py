"""`headway cache mode` and `headway dumps`: two settings switches."""

from __future__ import annotations

import click

from proxy.config.settings import SettingsError

from .root import cli, env_paths, fail, load_store


@cli.group("cache")
def cache_group() -> None:
    """Anthropic prompt-cache mode."""


@cache_group.command("mode")
@click.argument("mode", required=False, type=click.Choice(["off", "explicit", "automatic", "hybrid"]))
def cache_mode(mode: str | None) -> None:
    """Show or set the Anthropic cache mode (hybrid is recommended for sessions with pauses)."""
    store = load_store(env_paths(), strict=mode is not None)
    if mode is None:
        click.echo(store.current.cache.anthropic_mode)
        return
    try:
        store.update(lambda s: setattr(s.cache, "anthropic_mode", mode))
    except SettingsError as exc:
        raise fail(exc) from exc
    click.echo(f"Anthropic cache mode: {mode}")


@cli.command("dumps")
@click.argument("state", required=False, type=click.Choice(["on", "off", "status"]), default="status")
def dumps_command(state: str) -> None:
    """Turn request dumps on or off (they hold your prompts: sensitive), or show where they are."""
    paths = env_paths()
    store = load_store(paths, strict=state != "status")
    if state != "status":
        try:
            store.update(lambda s: setattr(s.dumps, "enabled", state == "on"))
        except SettingsError as exc:
            raise fail(exc) from exc
    settings = store.current
    folder = paths.dumps_dir
    files = [f for f in folder.glob("*") if f.is_file()] if folder.exists() else []
    size = sum(f.stat().st_size for f in files)
    click.echo(
        f"dumps {'on' if settings.dumps.enabled else 'off'} · {folder} · "
        f"{len(files)} files, {size / 1e6:.1f} MB of {settings.dumps.max_mb} MB"
    )
