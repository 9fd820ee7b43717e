"""`headway login chatgpt`: sign in to a subscription account, in a browser or with a device code."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from proxy.config.settings import Settings, SettingsError
from proxy.config.store import SettingsStore
from proxy.secrets.keychain import Keychain, KeychainError

from ..app import make_keychain, read_runtime
from .root import cli, env_paths, fail, load_store, step

if TYPE_CHECKING:
    from proxy.auth import LoginResult, OAuthConfig


@cli.group()
def login() -> None:
    """Sign in to a subscription account (ChatGPT Plus/Pro)."""


@login.command("chatgpt")
@click.option(
    "--headless", is_flag=True, help="Sign in with a code entered on another device (no browser here)."
)
@click.option("--label", default=None, help="A name for this account (default: its email).")
@click.option("--no-browser", is_flag=True, help="Print the sign-in URL instead of opening a browser.")
def login_chatgpt(headless: bool, label: str | None, no_browser: bool) -> None:
    """Sign in to ChatGPT; signing in to an account Headway already has updates it."""
    from proxy.auth import CallbackError, LoginError, OAuthConfig, OAuthError, oauth_config

    paths = env_paths()
    paths.ensure()
    store = load_store(paths, strict=True)
    cfg = oauth_config(store.current, os.environ)
    keychain = make_keychain(paths, store.current)
    if cfg.base != OAuthConfig().base:
        click.echo(
            f"Using the sign-in service at {cfg.base} (HEADWAY_OPENAI_AUTH_URL or upstreams.openai_auth)."
        )
    try:
        result = (
            _login_device(store, keychain, cfg, label)
            if headless
            else _login_browser(store, keychain, cfg, label, no_browser)
        )
    except (LoginError, CallbackError, OAuthError, KeychainError, SettingsError) as exc:
        raise fail(exc) from exc
    account = result.account
    if account.label != account.email:
        click.echo(f"Label: {account.label}")
    click.echo(f"Tokens are in: {keychain.describe()}")
    click.echo(result.summary())
    click.echo(_place_in_order(load_store(paths).current, account.id))
    if read_runtime(paths):
        click.echo("The running Headway picks up the account by itself.")


def _login_browser(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, label: str | None, no_browser: bool
) -> LoginResult:
    from proxy.auth import BROWSER_LOGIN_TIMEOUT, BrowserLogin, callback_port
    from web_ui.callback import CallbackServer

    flow = BrowserLogin(
        store,
        keychain,
        cfg,
        callback_server=CallbackServer,
        label=label,
        port=callback_port(os.environ),
        open_browser=not no_browser,
        progress=step,
    )
    click.echo("Signing in to ChatGPT in the browser.")
    url = flow.start()
    if flow.opened:
        click.echo("Opened the sign-in page in your browser. If it did not appear, open this URL:")
    else:
        click.echo("Open this URL in a browser on this machine to sign in:")
    click.echo(url)
    click.echo(f"(Waiting up to {BROWSER_LOGIN_TIMEOUT / 60:.0f} minutes; Ctrl+C cancels.)")
    return flow.finish()


def _login_device(
    store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, label: str | None
) -> LoginResult:
    from proxy.auth import DEVICE_LOGIN_TIMEOUT, DeviceLogin

    flow = DeviceLogin(store, keychain, cfg, label=label, progress=step)
    click.echo("Signing in to ChatGPT with a device code.")
    code = flow.start()
    click.echo(f"1. On any device, open: {code.verification_url}")
    click.echo(f"2. Sign in and enter this code: {code.user_code}")
    click.echo(f"(The code is valid for {DEVICE_LOGIN_TIMEOUT / 60:.0f} minutes; Ctrl+C cancels.)")
    return flow.finish()


def _place_in_order(settings: Settings, account_id: str) -> str:
    """Where the account sits among the OpenAI-family accounts (routing order), and how to change it."""
    family = [a for a in settings.accounts if a.family == "openai"]
    ids = [a.id for a in family]
    if account_id not in ids:
        return ""
    place = ids.index(account_id) + 1
    text = f"Order: #{place} of {len(ids)} OpenAI accounts ({', '.join(ids)})."
    if len(ids) == 1:
        return text + " It serves every OpenAI request (Codex, OpenCode, Pi)."
    metered = [a.id for a in family[: place - 1] if a.kind == "openai-api-key"]
    if metered:
        text += f" The metered API key {', '.join(metered)} is tried first: requests bill it before this subscription."
    if place == 1:
        return text + " It is the main OpenAI account; to put another first: headway accounts order <id>"
    return text + f"\nTo make it the main OpenAI account: headway accounts order {account_id}"
