"""`headway doctor`: every check Headway needs, one line each with its fix (:mod:`tray.doctor`)."""

from __future__ import annotations

import click

from .root import cli, env_paths


@cli.command()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Machine-readable: a list of {"check", "status", "detail", "fix"}.',
)
@click.option(
    "--network", is_flag=True, help="Also check that each upstream answers (DNS, TLS, one request)."
)
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, network: bool) -> None:
    """Check everything Headway needs, one line each with the fix. Exit code 1 when a check fails."""
    from ..doctor import exit_code, format_checks, run_checks, to_json

    checks = run_checks(env_paths(), network=network)
    click.echo(to_json(checks) if as_json else format_checks(checks))
    ctx.exit(exit_code(checks))
