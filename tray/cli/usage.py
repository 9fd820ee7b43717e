"""`headway usage`: requests, tokens and estimated cost from the request log."""

from __future__ import annotations

import json
import time

import click

from proxy.features.member_usage import format_member_summary, member_summary
from proxy.features.request_log import RequestLog, format_summary

from .root import DAYS, cli, env_paths


@cli.command()
@click.option(
    "--days", type=DAYS, default=7.0, show_default=True, help="How far back to look (up to 3650 days)."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--by",
    type=click.Choice(["account", "key"]),
    default="account",
    show_default=True,
    help="Group per account and model, or per access key (team members; the local key as '(local key)').",
)
def usage(days: float, as_json: bool, by: str) -> None:
    """Requests, tokens and estimated cost per account and model, or per member key."""
    paths = env_paths()
    since = time.time() - days * 86400
    if by == "key":
        members = member_summary(paths.request_log, since=since)
        if as_json:
            click.echo(json.dumps(members, indent=2))
        elif not members:
            click.echo(f"No requests in the last {days:g} days.")
        else:
            click.echo(format_member_summary(members))
        return
    rows = RequestLog(paths.request_log).summary(since=since)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"No requests in the last {days:g} days.")
    else:
        click.echo(format_summary(rows))
