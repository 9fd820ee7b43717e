"""`headway key` (the local access key agents use) and `headway secrets` (where secrets are kept)."""

from __future__ import annotations

import click

from proxy.config.settings import SettingsError
from proxy.secrets.keychain import ACCESS_KEY, KeychainError, ensure_access_key

from ..app import make_keychain, read_runtime
from .root import cli, env_paths, fail, load_store


@cli.command()
@click.option("--rotate", is_flag=True, help="Make a new key (agents using the old one stop working).")
def key(rotate: bool) -> None:
    """Print the local access key agents use as their API key."""
    paths = env_paths()
    keychain = make_keychain(paths, load_store(paths).current)
    try:
        if rotate:
            keychain.delete(ACCESS_KEY)
            if read_runtime(paths):
                click.echo("Restart Headway for the new key to take effect.", err=True)
        click.echo(ensure_access_key(keychain))
    except KeychainError as exc:
        raise fail(exc) from exc


@cli.group("secrets", invoke_without_command=True)
@click.pass_context
def secrets_group(ctx: click.Context) -> None:
    """Where secrets are kept: the OS keychain (system), or an owner-only file that is NOT encrypted (file)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(secrets_backend)


@secrets_group.command("backend")
@click.argument("backend", required=False, type=click.Choice(["system", "file"]))
def secrets_backend(backend: str | None) -> None:
    """Show or set secrets.backend. Use "file" only on a machine with no keychain (a headless server), knowingly.

    Secrets are not moved between backends: add keys and log in again after switching.
    """
    paths = env_paths()
    store = load_store(paths, strict=backend is not None)
    if backend is None:
        keychain = make_keychain(paths, store.current)
        click.echo(f"{store.current.secrets.backend}: {keychain.describe()}")
        return
    if backend == store.current.secrets.backend:
        click.echo(f"secrets.backend is already {backend}")
        return
    paths.ensure()
    try:
        store.update(lambda s: setattr(s.secrets, "backend", backend))
    except SettingsError as exc:
        raise fail(exc) from exc
    if backend == "file":
        click.echo(f"Secrets now go to {paths.secrets_file} (owner-only, NOT encrypted).")
    else:
        click.echo("Secrets now go to the OS keychain.")
    if store.current.accounts:
        click.echo(
            "Keys and logins stored before stay where they were: set them again (`headway accounts set-key`, "
            "`headway login chatgpt`).",
            err=True,
        )
    if read_runtime(paths):
        click.echo("Restart Headway for the change to take effect.", err=True)
