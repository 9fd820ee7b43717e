"""`headway serve`: the gateway without a tray."""

from __future__ import annotations

import os

import click

from .root import cli, env_paths


@cli.command()
@click.option(
    "--port", type=int, default=None, help="Listen on this port (default: gateway.port in settings)."
)
@click.option("--host", default=None, help="Bind address (default: gateway.host in settings, 127.0.0.1).")
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a --host beyond this machine (e.g. 0.0.0.0) for a team gateway. The access key is always "
    "required then; put a reverse proxy with TLS in front.",
)
def serve(port: int | None, host: str | None, allow_remote: bool) -> None:
    """Run the gateway headless (no tray) until interrupted."""
    from ..memory import prepare_long_running_process

    prepare_long_running_process()  # first: before the engine's modules load
    from proxy.engine import EngineOptions

    from ..app import build_services, run_headless
    from ..keychain_wait import KeychainWaitNotice, keychain_wait

    # Run by hand or by a service manager: a keychain error stops it at once (HEADWAY_KEYCHAIN_WAIT may say wait).
    wait = keychain_wait(os.environ, 0.0)
    options = EngineOptions(
        host=host,
        port=port,
        allow_remote=allow_remote,
        keychain_wait=wait,
        on_keychain_wait=KeychainWaitNotice(wait, display=False),
    )
    # A busy port, no keychain, an invalid settings file, a remote host without --allow-remote…: tray.failures
    # explains them (see main()).
    run_headless(build_services(env_paths(), options))
