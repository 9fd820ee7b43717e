"""`headway serve`: the gateway without a tray."""

from __future__ import annotations

import click

from .root import cli, env_paths


@cli.command()
@click.option(
    "--port", type=int, default=None, help="Listen on this port (default: gateway.port in settings)."
)
@click.option("--host", default=None, help="Bind address (default: gateway.host in settings, 127.0.0.1).")
def serve(port: int | None, host: str | None) -> None:
    """Run the gateway headless (no tray) until interrupted."""
    from proxy.engine import EngineOptions

    from ..app import build_services, run_headless

    # A busy port, no keychain, an invalid settings file…: tray.failures explains them (see main()).
    run_headless(build_services(env_paths(), EngineOptions(host=host, port=port)))
