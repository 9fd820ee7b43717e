"""`headway autostart`: start Headway at login (:mod:`tray.autostart`)."""

from __future__ import annotations

import click

from .root import cli, fail


@cli.group(invoke_without_command=True)
@click.pass_context
def autostart(ctx: click.Context) -> None:
    """Start Headway when you log in: on, off, or status (the default)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(autostart_status)


@autostart.command("on")
def autostart_on() -> None:
    """Start this Headway at login (takes effect at the next login)."""
    from ..autostart import AutostartError, for_platform

    entry = for_platform()
    try:
        entry.enable()
    except AutostartError as exc:
        raise fail(exc) from exc
    click.echo(f"on: {entry.kind} {entry.location()}")


@autostart.command("off")
def autostart_off() -> None:
    """Do not start Headway at login."""
    from ..autostart import AutostartError, for_platform

    entry = for_platform()
    try:
        entry.disable()
    except AutostartError as exc:
        raise fail(exc) from exc
    click.echo("off")


@autostart.command("status")
def autostart_status() -> None:
    """Whether Headway starts at login, and what the entry runs."""
    from ..autostart import AutostartError, for_platform

    entry = for_platform()
    try:
        enabled = entry.is_enabled()
        command = entry.registered_command()
    except AutostartError as exc:
        raise fail(exc) from exc
    click.echo(f"{'on' if enabled else 'off'}: {entry.kind} {entry.location()}")
    if command:
        click.echo(f"runs: {command}")
