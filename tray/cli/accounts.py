"""`headway accounts`: add, list, order, enable and remove upstream accounts."""

from __future__ import annotations

import json
import math
from typing import Any, Literal

import click

from proxy.config.accounts import (
    AccountError,
    add_api_key_account,
    key_warning,
    kind_for_provider,
    remove_account,
    reorder_accounts,
    set_account_enabled,
    set_api_key,
    set_budget,
)
from proxy.config.settings import SettingsError
from proxy.secrets.keychain import KeychainError

from ..app import make_keychain
from .root import cli, env_paths, fail, load_store, read_secret


@cli.group()
def accounts() -> None:
    """Add, list, order, enable and remove upstream accounts."""


@accounts.command("add")
@click.argument("provider", type=click.Choice(["anthropic", "openai"]))
@click.option("--label", required=True, help="A name for this account, e.g. 'work' or 'personal'.")
@click.option(
    "--api-key-stdin", is_flag=True, help="Read the API key from standard input instead of a prompt."
)
def accounts_add(provider: Literal["anthropic", "openai"], label: str, api_key_stdin: bool) -> None:
    """Add an API-key account; the key goes to the OS keychain."""
    paths = env_paths()
    paths.ensure()
    store = load_store(paths, strict=True)
    kind = kind_for_provider(provider)
    api_key = read_secret(api_key_stdin, f"{'Anthropic' if provider == 'anthropic' else 'OpenAI'} API key")
    warning = key_warning(kind, api_key)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    try:
        account = add_api_key_account(store, make_keychain(paths, store.current), kind, label, api_key)
    except (AccountError, SettingsError, KeychainError) as exc:
        raise fail(exc) from exc
    where = (
        "the OS keychain"
        if store.current.secrets.backend == "system"
        else "the plain secrets file (not encrypted)"
    )
    click.echo(f"added {account.id} ({account.label}, {account.kind}); key stored in {where}")


@accounts.command("set-key")
@click.argument("account")
@click.option(
    "--api-key-stdin", is_flag=True, help="Read the API key from standard input instead of a prompt."
)
def accounts_set_key(account: str, api_key_stdin: bool) -> None:
    """Replace an account's API key."""
    paths = env_paths()
    store = load_store(paths)
    api_key = read_secret(api_key_stdin, "New API key")
    try:
        changed = set_api_key(store, make_keychain(paths, store.current), account, api_key)
    except (AccountError, KeychainError) as exc:
        raise fail(exc) from exc
    click.echo(f"replaced the key of {changed.id} ({changed.label})")


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def accounts_list(as_json: bool) -> None:
    """List accounts in routing order."""
    store = load_store(env_paths())
    items = [
        a.model_dump(mode="json", exclude_none=True) | {"family": a.family} for a in store.current.accounts
    ]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("No accounts yet. Add one with: headway accounts add anthropic --label main")
        return
    for index, a in enumerate(store.current.accounts, 1):
        state = "" if a.enabled else "  [disabled]"
        if a.budget is not None:
            caps = [
                f"${v:g}/{n}" for n, v in (("day", a.budget.daily_usd), ("month", a.budget.monthly_usd)) if v
            ]
            state += f"  budget {' '.join(caps)}"
        click.echo(f"{index}. {a.id:<16} {a.label:<20} {a.kind}{state}")


@accounts.command("remove")
@click.argument("account")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def accounts_remove(account: str, yes: bool) -> None:
    """Remove an account and delete its secret from the keychain."""
    paths = env_paths()
    store = load_store(paths, strict=True)
    if not yes:
        click.confirm(f"Remove account {account} and its key?", abort=True)
    try:
        removed = remove_account(store, make_keychain(paths, store.current), account)
    except (AccountError, SettingsError, KeychainError) as exc:
        raise fail(exc) from exc
    click.echo(f"removed {removed.id} ({removed.label})")


@accounts.command("enable")
@click.argument("account")
def accounts_enable(account: str) -> None:
    """Let an account take requests again."""
    _toggle(account, True)


@accounts.command("disable")
@click.argument("account")
def accounts_disable(account: str) -> None:
    """Keep an account but route nothing to it."""
    _toggle(account, False)


def _toggle(ref: str, enabled: bool) -> None:
    store = load_store(env_paths(), strict=True)
    try:
        account = set_account_enabled(store, ref, enabled)
    except (AccountError, SettingsError) as exc:
        raise fail(exc) from exc
    click.echo(f"{account.id} {'enabled' if enabled else 'disabled'}")


@accounts.command("order")
@click.argument("accounts", nargs=-1, required=True)
def accounts_order(accounts: tuple[str, ...]) -> None:
    """Put the named accounts first, in this order (the first is the main account of its family)."""
    store = load_store(env_paths(), strict=True)
    try:
        ordered = reorder_accounts(store, list(accounts))
    except (AccountError, SettingsError) as exc:
        raise fail(exc) from exc
    click.echo("order: " + ", ".join(a.id for a in ordered))


class _Usd(click.ParamType[float]):
    name = "usd"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            amount = float(str(value).removeprefix("$"))
        except ValueError:
            self.fail(f"{value!r} is not an amount in USD", param, ctx)
        if not math.isfinite(amount) or amount <= 0:
            self.fail(f"{value} is not an amount in USD above 0", param, ctx)
        return amount


@accounts.command("budget")
@click.argument("account")
@click.option("--daily", type=_Usd(), help="Cap on the estimated cost per local day, in USD.")
@click.option("--monthly", type=_Usd(), help="Cap on the estimated cost per calendar month, in USD.")
@click.option("--clear", is_flag=True, help="Remove the account's budget.")
def accounts_budget(account: str, daily: float | None, monthly: float | None, clear: bool) -> None:
    """Cap an API-key account's estimated spend: reached, it is skipped until local midnight (the 1st)."""
    if clear == (daily is not None or monthly is not None):
        raise click.UsageError("give --daily and/or --monthly, or --clear")
    store = load_store(env_paths(), strict=True)
    try:
        changed = set_budget(store, account, daily, monthly)
    except (AccountError, SettingsError) as exc:
        raise fail(exc) from exc
    if changed.budget is None:
        click.echo(f"{changed.id}: no budget")
        return
    caps = [f"${v:g} {name}" for name, v in (("a day", daily), ("a month", monthly)) if v is not None]
    click.echo(f"{changed.id}: budget {' and '.join(caps)} (estimated from the price table)")
