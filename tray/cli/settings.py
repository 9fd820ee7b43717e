"""`headway settings`: open the settings page signed in; the settings file's path, schema, check and restore."""

from __future__ import annotations

import json
import os
import sys

import click

from proxy.config.settings import SettingsError, json_schema

from ..app import read_runtime
from .root import cli, env_paths, fail, load_store


@cli.group(invoke_without_command=True)
@click.option(
    "--print-url", is_flag=True, help="Print the one-time sign-in link instead of opening a browser."
)
@click.pass_context
def settings(ctx: click.Context, print_url: bool) -> None:
    """Open the settings page signed in; or: where the settings file is, its schema, whether it is valid."""
    if ctx.invoked_subcommand is None:
        _open_settings_page(print_url)


def _open_settings_page(print_url: bool) -> None:
    from web_ui.opener import open_signed_in
    from web_ui.server import cli_login_url

    paths = env_paths()
    try:
        url = cli_login_url(paths)
    except OSError as exc:
        raise fail(exc) from exc
    if url is None:
        raise click.ClickException(
            "Headway is not running: start it (`headway`, or `headway serve`) and try again"
        )
    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if (
        print_url or headless or not open_signed_in(paths, url)
    ):  # the token stays off the browser's command line
        click.echo(url)
        click.echo("This link signs a browser in once, within a minute.", err=True)
        return
    click.echo("Opened the settings page in your browser.")


@settings.command("path")
def settings_path() -> None:
    """Print where the settings file is."""
    click.echo(str(env_paths().settings_file))


@settings.command("schema")
def settings_schema() -> None:
    """Print the JSON Schema of the settings file (for editors that validate JSON)."""
    click.echo(json.dumps(json_schema(), indent=2))


@settings.command("check")
def settings_check() -> None:
    """Check the settings file: 'valid', or each problem by its key path (exit status 1)."""
    store = load_store(env_paths())
    if store.error is not None:
        raise click.ClickException(str(store.error))
    click.echo(f"{store.path}: valid")


@settings.command("restore")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def settings_restore(yes: bool) -> None:
    """Put the last good settings back in place of a missing, empty, unreadable or broken settings file.

    Every settings file that loaded fine is copied to the data folder (settings.last-good.json); this copies it back.
    Whatever is in the way is moved aside (settings.json.broken-<time>), never deleted.
    """
    paths = env_paths()
    store = load_store(paths)
    if store.error is None:
        raise click.ClickException(f"{store.path} is fine; nothing to restore")
    click.echo(f"The settings file cannot be used:\n{store.error}")
    if not yes:
        click.confirm(f"Put the last good settings from {store.last_good} back in {store.path}?", abort=True)
    try:
        aside = store.restore_last_good()
    except SettingsError as exc:
        raise click.ClickException("\n".join(exc.problems)) from exc
    except OSError as exc:
        raise fail(exc) from exc
    click.echo(f"restored {store.path} from {store.last_good}")
    if aside is not None:
        click.echo(f"what was in the way is now {aside}")
    if read_runtime(paths):
        click.echo("The running Headway picks the restored settings up by itself.")
