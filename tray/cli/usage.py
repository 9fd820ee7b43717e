"""`headway usage`: requests, tokens and estimated cost from the request log."""

from __future__ import annotations

import json
import time

import click

from proxy.features.request_log import RequestLog, format_summary

from .root import DAYS, cli, env_paths


@cli.command()
@click.option(
    "--days", type=DAYS, default=7.0, show_default=True, help="How far back to look (up to 3650 days)."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def usage(days: float, as_json: bool) -> None:
    """Requests, tokens and estimated cost per account and model."""
    paths = env_paths()
    rows = RequestLog(paths.request_log).summary(since=time.time() - days * 86400)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"No requests in the last {days:g} days.")
    else:
        click.echo(format_summary(rows))
