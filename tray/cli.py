"""The ``headway`` command.

``headway`` alone runs the tray app (headless when there is no display); ``headway serve`` runs the gateway without
a tray. Everything else manages settings, accounts and secrets, or asks the running instance for its status.
Secrets are read from a prompt or standard input, never from the command line (argv is visible to other users).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click
import httpx

from proxy import __version__
from proxy.accounts import (
    AccountError,
    add_api_key_account,
    key_warning,
    kind_for_provider,
    remove_account,
    reorder_accounts,
    set_account_enabled,
    set_api_key,
)
from proxy.keychain import ACCESS_KEY, Keychain, KeychainError, ensure_access_key
from proxy.paths import Paths
from proxy.request_log import RequestLog, format_summary
from proxy.settings import SettingsError, json_schema
from proxy.settings_store import SettingsStore
from proxy.state import RuntimeState

from .app import make_keychain, read_runtime

if TYPE_CHECKING:
    from proxy.auth import LoginResult, OAuthConfig

__all__ = ["main"]


def _paths() -> Paths:
    return Paths.from_env()


def _store(paths: Paths, *, strict: bool = False) -> SettingsStore:
    store = SettingsStore.for_paths(paths)
    store.load()
    if strict and store.error is not None:
        raise _unusable(store, store.error)
    return store


def _unusable(store: SettingsStore, error: SettingsError) -> click.ClickException:
    """Nothing was changed because the settings file cannot be used: what is wrong with it, and the way back."""
    text = f"the settings file cannot be used, so nothing was changed:\n{error}"
    if "headway settings restore" not in text and store.last_good.is_file():
        text += "\n  fix: correct the file, or put the last good settings back with `headway settings restore`"
    return click.ClickException(text)


def _fail(exc: Exception) -> click.ClickException:
    from .failures import explain

    failure = explain(exc)
    if failure is None:
        return click.ClickException(str(exc))
    return click.ClickException(failure.message + (f"\n  fix: {failure.fix}" if failure.fix else ""))


class _Days(click.ParamType[float]):
    """How far back `usage` and `analyze` look: more than nothing, at most ten years."""

    name = "days"
    limit = 3650.0

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            days = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of days", param, ctx)
        if not math.isfinite(days) or not 0 < days <= self.limit:
            self.fail(f"{value} is not a number of days between 0 (excluded) and {self.limit:g}", param, ctx)
        return days


DAYS = _Days()


def _read_secret(stdin: bool, prompt: str) -> str:
    if stdin:
        value = sys.stdin.readline().strip()
    else:
        value = click.prompt(prompt, hide_input=True).strip()
    if not value:
        raise click.ClickException("no key given")
    return value


@click.group(invoke_without_command=True)
@click.version_option(__version__, prog_name="headway")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Headway: run your coding agents on your own ChatGPT, OpenAI and Anthropic accounts."""
    from .cli_log import log_cli_to_file

    log_cli_to_file(_paths().log_dir)  # problems reach the user once, as the command's message; records go to the log
    if ctx.invoked_subcommand is None:
        from .tray_main import run_tray_or_headless

        run_tray_or_headless(_paths())


@cli.command()
@click.option("--port", type=int, default=None, help="Listen on this port (default: gateway.port in settings).")
@click.option("--host", default=None, help="Bind address (default: gateway.host in settings, 127.0.0.1).")
def serve(port: int | None, host: str | None) -> None:
    """Run the gateway headless (no tray) until interrupted."""
    from proxy.engine import EngineOptions

    from .app import build_services, run_headless

    # A busy port, no keychain, an invalid settings file…: tray.failures explains them (see main()).
    run_headless(build_services(_paths(), EngineOptions(host=host, port=port)))


@cli.command()
@click.option("--rotate", is_flag=True, help="Make a new key (agents using the old one stop working).")
def key(rotate: bool) -> None:
    """Print the local access key agents use as their API key."""
    paths = _paths()
    keychain = make_keychain(paths, _store(paths).current)
    try:
        if rotate:
            keychain.delete(ACCESS_KEY)
            if read_runtime(paths):
                click.echo("Restart Headway for the new key to take effect.", err=True)
        click.echo(ensure_access_key(keychain))
    except KeychainError as exc:
        raise _fail(exc) from exc


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
    paths = _paths()
    store = _store(paths, strict=backend is not None)
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
        raise _fail(exc) from exc
    if backend == "file":
        click.echo(f"Secrets now go to {paths.secrets_file} (owner-only, NOT encrypted).")
    else:
        click.echo("Secrets now go to the OS keychain.")
    if store.current.accounts:
        click.echo("Keys and logins stored before stay where they were: set them again (`headway accounts set-key`, "
                   "`headway login chatgpt`).", err=True)
    if read_runtime(paths):
        click.echo("Restart Headway for the change to take effect.", err=True)


# --------------------------------------------------------------------------- accounts


@cli.group()
def accounts() -> None:
    """Add, list, order, enable and remove upstream accounts."""


@accounts.command("add")
@click.argument("provider", type=click.Choice(["anthropic", "openai"]))
@click.option("--label", required=True, help="A name for this account, e.g. 'work' or 'personal'.")
@click.option("--api-key-stdin", is_flag=True, help="Read the API key from standard input instead of a prompt.")
def accounts_add(provider: Literal["anthropic", "openai"], label: str, api_key_stdin: bool) -> None:
    """Add an API-key account; the key goes to the OS keychain."""
    paths = _paths()
    paths.ensure()
    store = _store(paths, strict=True)
    kind = kind_for_provider(provider)
    api_key = _read_secret(api_key_stdin, f"{'Anthropic' if provider == 'anthropic' else 'OpenAI'} API key")
    warning = key_warning(kind, api_key)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    try:
        account = add_api_key_account(store, make_keychain(paths, store.current), kind, label, api_key)
    except (AccountError, SettingsError, KeychainError) as exc:
        raise _fail(exc) from exc
    where = "the OS keychain" if store.current.secrets.backend == "system" else "the plain secrets file (not encrypted)"
    click.echo(f"added {account.id} ({account.label}, {account.kind}); key stored in {where}")


@accounts.command("set-key")
@click.argument("account")
@click.option("--api-key-stdin", is_flag=True, help="Read the API key from standard input instead of a prompt.")
def accounts_set_key(account: str, api_key_stdin: bool) -> None:
    """Replace an account's API key."""
    paths = _paths()
    store = _store(paths)
    api_key = _read_secret(api_key_stdin, "New API key")
    try:
        changed = set_api_key(store, make_keychain(paths, store.current), account, api_key)
    except (AccountError, KeychainError) as exc:
        raise _fail(exc) from exc
    click.echo(f"replaced the key of {changed.id} ({changed.label})")


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def accounts_list(as_json: bool) -> None:
    """List accounts in routing order."""
    store = _store(_paths())
    items = [a.model_dump(mode="json", exclude_none=True) | {"family": a.family} for a in store.current.accounts]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("No accounts yet. Add one with: headway accounts add anthropic --label main")
        return
    for index, a in enumerate(store.current.accounts, 1):
        state = "" if a.enabled else "  [disabled]"
        click.echo(f"{index}. {a.id:<16} {a.label:<20} {a.kind}{state}")


@accounts.command("remove")
@click.argument("account")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def accounts_remove(account: str, yes: bool) -> None:
    """Remove an account and delete its secret from the keychain."""
    paths = _paths()
    store = _store(paths, strict=True)
    if not yes:
        click.confirm(f"Remove account {account} and its key?", abort=True)
    try:
        removed = remove_account(store, make_keychain(paths, store.current), account)
    except (AccountError, SettingsError, KeychainError) as exc:
        raise _fail(exc) from exc
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
    store = _store(_paths(), strict=True)
    try:
        account = set_account_enabled(store, ref, enabled)
    except (AccountError, SettingsError) as exc:
        raise _fail(exc) from exc
    click.echo(f"{account.id} {'enabled' if enabled else 'disabled'}")


@accounts.command("order")
@click.argument("accounts", nargs=-1, required=True)
def accounts_order(accounts: tuple[str, ...]) -> None:
    """Put the named accounts first, in this order (the first is the main account of its family)."""
    store = _store(_paths(), strict=True)
    try:
        ordered = reorder_accounts(store, list(accounts))
    except (AccountError, SettingsError) as exc:
        raise _fail(exc) from exc
    click.echo("order: " + ", ".join(a.id for a in ordered))


# --------------------------------------------------------------------------- login


@cli.group()
def login() -> None:
    """Sign in to a subscription account (ChatGPT Plus/Pro)."""


@login.command("chatgpt")
@click.option("--headless", is_flag=True, help="Sign in with a code entered on another device (no browser here).")
@click.option("--label", default=None, help="A name for this account (default: its email).")
@click.option("--no-browser", is_flag=True, help="Print the sign-in URL instead of opening a browser.")
def login_chatgpt(headless: bool, label: str | None, no_browser: bool) -> None:
    """Sign in to ChatGPT; signing in to an account Headway already has updates it."""
    from proxy.auth import CallbackError, LoginError, OAuthConfig, OAuthError, oauth_config
    paths = _paths()
    paths.ensure()
    store = _store(paths, strict=True)
    cfg = oauth_config(store.current, os.environ)
    keychain = make_keychain(paths, store.current)
    if cfg.base != OAuthConfig().base:
        click.echo(f"Using the sign-in service at {cfg.base} (HEADWAY_OPENAI_AUTH_URL or upstreams.openai_auth).")
    try:
        result = (
            _login_device(store, keychain, cfg, label)
            if headless
            else _login_browser(store, keychain, cfg, label, no_browser)
        )
    except (LoginError, CallbackError, OAuthError, KeychainError, SettingsError) as exc:
        raise _fail(exc) from exc
    account = result.account
    if account.label != account.email:
        click.echo(f"Label: {account.label}")
    click.echo(f"Tokens are in: {keychain.describe()}")
    click.echo(result.summary())
    if read_runtime(paths):
        click.echo("The running Headway picks up the account by itself.")


def _step(message: str) -> None:
    click.echo(message[:1].upper() + message[1:] + "…")


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
        progress=_step,
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


def _login_device(store: SettingsStore, keychain: Keychain, cfg: OAuthConfig, label: str | None) -> LoginResult:
    from proxy.auth import DEVICE_LOGIN_TIMEOUT, DeviceLogin
    flow = DeviceLogin(store, keychain, cfg, label=label, progress=_step)
    click.echo("Signing in to ChatGPT with a device code.")
    code = flow.start()
    click.echo(f"1. On any device, open: {code.verification_url}")
    click.echo(f"2. Sign in and enter this code: {code.user_code}")
    click.echo(f"(The code is valid for {DEVICE_LOGIN_TIMEOUT / 60:.0f} minutes; Ctrl+C cancels.)")
    return flow.finish()


# --------------------------------------------------------------------------- status and usage


STATUS_TIMEOUT = 5.0


def _ask_status(paths: Paths, runtime: dict[str, Any], refresh: bool = False) -> tuple[dict[str, Any] | None, str]:
    """The running instance's /status, or None and what went wrong (it may be running and still not answer)."""
    store = _store(paths)
    timeout = 30.0 if refresh else STATUS_TIMEOUT
    try:
        key_value = make_keychain(paths, store.current).get(ACCESS_KEY)
    except KeychainError as exc:
        return None, f"cannot read the access key: {exc}"
    url = f"{runtime['url']}/status"
    try:
        response = httpx.get(
            url, params={"refresh": "1"} if refresh else None, headers={"x-api-key": key_value or ""}, timeout=timeout
        )
    except httpx.TimeoutException:
        return None, f"{url} did not answer within {timeout:g} s"
    except httpx.HTTPError as exc:
        return None, f"{url} cannot be reached: {exc}"
    if response.status_code == 401:
        return None, f"{url} refused this access key (rotated? restart Headway)"
    if not response.is_success:
        return None, f"{url} answered HTTP {response.status_code}"
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return None, f"{url} did not answer with a status object"
    data["running"] = True
    return data, ""


def _fetch_status(paths: Paths, runtime: dict[str, Any], refresh: bool = False) -> dict[str, Any] | None:
    return _ask_status(paths, runtime, refresh)[0]


def _offline_status(paths: Paths) -> dict[str, Any]:
    from proxy.engine import status_snapshot
    store = _store(paths)
    state = RuntimeState.load(paths.state_file)
    return {
        "version": __version__,
        "running": False,
        "url": None,
        "routing": store.current.routing.mode,
        "settings_file": str(paths.settings_file),
        "settings_error": None if store.error is None else store.error.problems,
        "accounts": status_snapshot(store.current, state, time.time(), {}),
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds + 0.5)
    if seconds < 90:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 90:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def _format_window(w: dict[str, Any]) -> str:
    left = w.get("remaining_percent")
    text = f"{w['name']}: " + ("?" if left is None else f"{left:g}% left")
    if w.get("limit") is not None and w.get("remaining") is not None:
        text += f" ({w['remaining']:g}/{w['limit']:g})"
    if w.get("resets_in_seconds") is not None:
        text += f", resets in {_duration(w['resets_in_seconds'])}"
    if not w.get("current", True):
        text += " (stale: reset passed)"
    return text


def format_status(data: dict[str, Any]) -> str:
    lines = []
    if data.get("status_error"):
        lines.append(
            f"Headway {data['version']} — running at {data['url']} (pid {data.get('pid')}), but {data['status_error']}"
        )
        lines.append("Showing the last saved state instead.")
    elif data.get("running"):
        lines.append(f"Headway {data['version']} — running at {data['url']} (pid {data.get('pid')})")
    else:
        lines.append(f"Headway {data['version']} — not running")
    if data.get("listen_error"):
        lines.append(f"Gateway port: {data['listen_error']}")
    lines.append(f"Routing: {data['routing']}")
    if data.get("settings_error"):
        lines.append("Settings file is INVALID — still using the last good settings:")
        lines.extend(f"  {p}" for p in data["settings_error"])
    relay = data.get("relay")
    if isinstance(relay, dict) and (relay.get("enabled") or (relay.get("totals") or {}).get("requests")):
        lines.append("Relay: " + _relay_traffic(relay))
    if not data["accounts"]:
        lines.append("No accounts. Add one with: headway accounts add anthropic --label main")
    for a in data["accounts"]:
        health = a["health"].replace("_", " ")
        if a.get("blocked_for_seconds") is not None:
            health += f" for {_duration(a['blocked_for_seconds'])}"
        lines.append(f"- {a['label']} [{a['id']}, {a['kind']}]: {health}")
        if a.get("detail") and a["health"] not in ("healthy", "disabled"):
            lines.append(f"    {a['detail']}")
        quota = a.get("quota")
        if quota:
            age = _duration(max(0.0, time.time() - quota["updated_at"]))
            lines.append(f"    quota (as of {age} ago): " + " · ".join(_format_window(w) for w in quota["windows"]))
        else:
            lines.append("    quota: unknown until the first request")
    return "\n".join(lines)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--refresh", is_flag=True, help="Ask each ChatGPT account's usage now (needs a running Headway).")
def status(as_json: bool, refresh: bool) -> None:
    """Accounts, health, quota windows, cooldowns and reset countdowns."""
    paths = _paths()
    runtime = read_runtime(paths)
    data, problem = _ask_status(paths, runtime, refresh) if runtime else (None, "")
    if refresh and data is None and not problem:
        click.echo("Headway is not running: showing the last known quota.", err=True)
    if data is None:
        data = _offline_status(paths)
        if runtime and problem:
            data.update(running=True, url=runtime.get("url"), pid=runtime.get("pid"), status_error=problem)
    click.echo(json.dumps(data, indent=2) if as_json else format_status(data))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help='Machine-readable: a list of {"check", "status", "detail", "fix"}.')
@click.option("--network", is_flag=True, help="Also check that each upstream answers (DNS, TLS, one request).")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, network: bool) -> None:
    """Check everything Headway needs, one line each with the fix. Exit code 1 when a check fails."""
    from .doctor import exit_code, format_checks, run_checks, to_json

    checks = run_checks(_paths(), network=network)
    click.echo(to_json(checks) if as_json else format_checks(checks))
    ctx.exit(exit_code(checks))


@cli.command()
@click.option("--days", type=DAYS, default=7.0, show_default=True, help="How far back to look (up to 3650 days).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def usage(days: float, as_json: bool) -> None:
    """Requests, tokens and estimated cost per account and model."""
    paths = _paths()
    rows = RequestLog(paths.request_log).summary(since=time.time() - days * 86400)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"No requests in the last {days:g} days.")
    else:
        click.echo(format_summary(rows))


# --------------------------------------------------------------------------- analyze


@cli.group()
def analyze() -> None:
    """Look into the request log: prompt-cache hits, breaks and what they cost."""


@analyze.command("cache")
@click.option("--session", "session_id", default=None, help="Only this session id.")
@click.option("--days", type=DAYS, default=7.0, show_default=True, help="How far back to look (up to 3650 days).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--opencode-db",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[PATH]",
    help="Analyze OpenCode's own database instead (no PATH: $OPENCODE_DB or $XDG_DATA_HOME/opencode/opencode.db).",
)
@click.option(
    "--chart",
    "chart_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write an SVG chart (stacked bars per turn) to this file.",
)
def analyze_cache(
    session_id: str | None, days: float, as_json: bool, opencode_db: str | None, chart_path: Path | None
) -> None:
    """Per session and turn: cache reads and writes, hit ratio, idle gaps, where a prefix broke, and the cost
    with no cache, a 5-minute cache and a 1-hour cache. Turn on dumps (settings: dumps.enabled) to see breaks."""
    from proxy.analyzer import (
        SourceError,
        analyze_headway,
        analyze_opencode,
        default_opencode_db,
        format_report,
        write_svg,
    )
    paths = _paths()
    try:
        if opencode_db is None:
            report = analyze_headway(paths.request_log, paths.dumps_dir, days=days, session_id=session_id)
        else:
            db = Path(opencode_db).expanduser() if opencode_db else default_opencode_db()
            report = analyze_opencode(db, days=days, session_id=session_id)
    except SourceError as exc:
        raise _fail(exc) from exc
    if chart_path is not None:
        write_svg(report, chart_path)
    click.echo(report.to_json() if as_json else format_report(report))
    if chart_path is not None and not as_json:
        click.echo(f"\nChart: {chart_path}")


# --------------------------------------------------------------------------- settings


@cli.group(invoke_without_command=True)
@click.option("--print-url", is_flag=True, help="Print the one-time sign-in link instead of opening a browser.")
@click.pass_context
def settings(ctx: click.Context, print_url: bool) -> None:
    """Open the settings page signed in; or: where the settings file is, its schema, whether it is valid."""
    if ctx.invoked_subcommand is None:
        _open_settings_page(print_url)


def _open_settings_page(print_url: bool) -> None:
    from web_ui.opener import open_signed_in
    from web_ui.server import cli_login_url

    paths = _paths()
    try:
        url = cli_login_url(paths)
    except OSError as exc:
        raise _fail(exc) from exc
    if url is None:
        raise click.ClickException("Headway is not running: start it (`headway`, or `headway serve`) and try again")
    headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if print_url or headless or not open_signed_in(paths, url):  # the token stays off the browser's command line
        click.echo(url)
        click.echo("This link signs a browser in once, within a minute.", err=True)
        return
    click.echo("Opened the settings page in your browser.")


@settings.command("path")
def settings_path() -> None:
    click.echo(str(_paths().settings_file))


@settings.command("schema")
def settings_schema() -> None:
    click.echo(json.dumps(json_schema(), indent=2))


@settings.command("check")
def settings_check() -> None:
    store = _store(_paths())
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
    paths = _paths()
    store = _store(paths)
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
        raise _fail(exc) from exc
    click.echo(f"restored {store.path} from {store.last_good}")
    if aside is not None:
        click.echo(f"what was in the way is now {aside}")
    if read_runtime(paths):
        click.echo("The running Headway picks the restored settings up by itself.")


# --------------------------------------------------------------------------- configure an agent


@cli.command()
@click.argument("agent", type=click.Choice(["opencode", "pi", "codex", "claude-code", "openhands", "aider"]))
@click.option("--print", "print_only", is_flag=True, help="Print the settings to paste instead of editing any file.")
@click.option(
    "--file",
    "file_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Edit this file instead of the agent's own default (e.g. a project's opencode.json).",
)
def configure(agent: str, print_only: bool, file_path: Path | None) -> None:
    """Point an agent at Headway: edits the agent's own config file (backup first, merged, idempotent) or prints it.

    OpenCode: opencode.json; Pi: models.json; Codex CLI: config.toml; Claude Code: settings.json (env); aider:
    ~/.aider.conf.yml; OpenHands: printed as environment variables (it keeps its own settings store).
    """
    from web_ui.agents import AGENTS, AgentConfigError, endpoint_for, env_overrides, plan, snippet, write

    paths = _paths()
    store = _store(paths)
    runtime = read_runtime(paths)
    gateway = store.current.gateway
    if runtime:
        base_url = str(runtime["url"])
    elif gateway.port == 0:
        raise click.ClickException("gateway.port is 0 (a new port at each start): start Headway first, or set a port")
    else:
        host = f"[{gateway.host}]" if ":" in gateway.host else gateway.host
        base_url = f"http://{host}:{gateway.port}"
    try:
        endpoint = endpoint_for(base_url, ensure_access_key(make_keychain(paths, store.current)))
    except KeychainError as exc:
        raise _fail(exc) from exc
    info = AGENTS[agent]
    if print_only or not info.writes:
        click.echo(snippet(agent, endpoint), nl=False)
        if not info.writes:
            click.echo(f"{info.title} keeps its own settings: set these in the environment it runs in.", err=True)
        for override in env_overrides(agent, endpoint.key):
            click.echo(f"warning: {override.message()}", err=True)
        return
    try:
        result = write(plan(agent, endpoint, path=file_path))
    except (AgentConfigError, OSError) as exc:
        raise _fail(exc) from exc
    if result.changed:
        click.echo(f"wrote {result.path}" + (f" (backup: {result.backup})" if result.backup else ""))
    else:
        click.echo(f"{result.path} already points at Headway; nothing changed")
    warnings = {o.message() for o in result.overrides}
    for note in result.notes:
        click.echo(f"{'warning' if note in warnings else 'note'}: {note}", err=True)
    if gateway.port == 0:
        click.echo("note: gateway.port is 0, so the port changes at each start; run this again after a restart", err=True)
    click.echo(f"then run: {info.run_hint}", err=True)


# --------------------------------------------------------------------------- launch at login


@cli.group(invoke_without_command=True)
@click.pass_context
def autostart(ctx: click.Context) -> None:
    """Start Headway when you log in: on, off, or status (the default)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(autostart_status)


@autostart.command("on")
def autostart_on() -> None:
    """Start this Headway at login (takes effect at the next login)."""
    from .autostart import AutostartError, for_platform

    entry = for_platform()
    try:
        entry.enable()
    except AutostartError as exc:
        raise _fail(exc) from exc
    click.echo(f"on: {entry.kind} {entry.location()}")


@autostart.command("off")
def autostart_off() -> None:
    """Do not start Headway at login."""
    from .autostart import AutostartError, for_platform

    entry = for_platform()
    try:
        entry.disable()
    except AutostartError as exc:
        raise _fail(exc) from exc
    click.echo("off")


@autostart.command("status")
def autostart_status() -> None:
    """Whether Headway starts at login, and what the entry runs."""
    from .autostart import AutostartError, for_platform

    entry = for_platform()
    try:
        enabled = entry.is_enabled()
        command = entry.registered_command()
    except AutostartError as exc:
        raise _fail(exc) from exc
    click.echo(f"{'on' if enabled else 'off'}: {entry.kind} {entry.location()}")
    if command:
        click.echo(f"runs: {command}")


# --------------------------------------------------------------------------- relay


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _relay_traffic(stats: dict[str, Any]) -> str:
    """One line: uploaded bytes against the bytes the provider received (the running instance's counters)."""
    totals = stats.get("totals") or {}
    state = "on" if stats.get("enabled") else "off"
    if not totals.get("requests"):
        return f"{state} ({stats.get('url')}), no request relayed yet"
    text = (
        f"{state}: uploaded {_size(totals['sent_bytes'])} for {_size(totals['body_bytes'])} of request bodies"
        f" ({totals.get('saved_percent')}% saved) over {totals['requests']} requests"
        f" ({totals.get('full_syncs', 0)} full, {totals.get('patches', 0)} patches"
    )
    if totals.get("resyncs"):
        text += f", {totals['resyncs']} resynced"
    if totals.get("failures"):
        text += f", {totals['failures']} went direct"
    return text + ")"


@cli.group()
def relay() -> None:
    """The optional relay through your own Cloudflare Worker: later turns of a session upload only a patch."""


@relay.command("setup")
@click.option("--account-id", default=None, help="Your Cloudflare account id (Workers & Pages overview); prompted if missing.")
@click.option("--api-token-stdin", is_flag=True, help="Read the Cloudflare API token from standard input, not a prompt.")
@click.option("--name", "worker_name", default=None, help="The Worker's name (default: the current one, or headway-relay).")
@click.option(
    "--storage",
    type=click.Choice(["durable_object", "kv"]),
    default="durable_object",
    show_default=True,
    help="Where the Worker keeps each session's last body.",
)
@click.option("--transport", type=click.Choice(["http", "websocket"]), default=None, help="How Headway talks to it.")
@click.option("--rotate-secret", is_flag=True, help="Make a new relay secret instead of keeping the current one.")
@click.option("--no-probe", is_flag=True, help="Do not wait for the Worker to answer after deploying it.")
def relay_setup(
    account_id: str | None,
    api_token_stdin: bool,
    worker_name: str | None,
    storage: Literal["durable_object", "kv"],
    transport: Literal["http", "websocket"] | None,
    rotate_secret: bool,
    no_probe: bool,
) -> None:
    """Deploy (or upgrade) the relay Worker in your Cloudflare account and turn the relay on.

    The API token needs the permission "Account · Workers Scripts · Edit" (and "Workers KV Storage · Edit" with
    --storage kv). It is used for these calls only and never stored. The Worker sees the API keys and prompts of
    the requests it relays: it runs in your account, from source Headway ships.
    """
    from proxy.relay.setup import RelaySetupError, setup_relay
    paths = _paths()
    paths.ensure()
    store = _store(paths, strict=True)
    current = store.current.relay
    account = (account_id or current.account_id or click.prompt("Cloudflare account id")).strip()
    token = _read_secret(api_token_stdin, "Cloudflare API token")
    try:
        info = setup_relay(
            token,
            account,
            keychain=make_keychain(paths, store.current),
            store=store,
            worker_name=worker_name or current.worker_name,
            storage=storage,
            transport=transport,
            rotate_secret=rotate_secret,
            probe=not no_probe,
            progress=_step,
        )
    except (RelaySetupError, KeychainError, SettingsError) as exc:
        raise _fail(exc) from exc
    verb = "Deployed" if info.created else "Upgraded"
    click.echo(f"{verb} Worker {info.worker_name} {info.worker_version} at {info.url} ({info.storage.replace('_', ' ')}).")
    click.echo("The relay secret is in the keychain; the API token was not kept. The relay is on.")
    if info.detail:
        click.echo(info.detail)
    if read_runtime(paths):
        click.echo("The running Headway picks the relay up by itself.")


@relay.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-probe", is_flag=True, help="Do not ask the Worker.")
def relay_status_command(as_json: bool, no_probe: bool) -> None:
    """Whether the relay is on, whether its Worker answers, and what it saved in this run."""
    from proxy.relay.setup import relay_status
    paths = _paths()
    store = _store(paths)
    try:
        data = relay_status(store, make_keychain(paths, store.current), probe=not no_probe)
    except KeychainError as exc:
        raise _fail(exc) from exc
    runtime = read_runtime(paths)
    running = _fetch_status(paths, runtime) if runtime else None
    if running is not None and isinstance(running.get("relay"), dict):
        data["traffic"] = running["relay"]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data.get("url"):
        click.echo("Relay: not set up. Run: headway relay setup")
        return
    fallback = "falls back to direct" if data["fallback_to_direct"] else "never goes direct"
    click.echo(
        f"Relay: {'on' if data['enabled'] else 'off'}, {data['url']} "
        f"({data['transport']}, {data['storage'].replace('_', ' ')}; {fallback})"
    )
    click.echo(f"Secret: {'in the keychain' if data['secret_in_keychain'] else 'MISSING from the keychain (run setup)'}")
    worker = data.get("worker")
    if isinstance(worker, dict):
        if worker.get("ok"):
            click.echo(
                f"Worker: {worker.get('worker_version')} (protocol {worker.get('protocol')}, {worker.get('storage')}),"
                f" answered in {worker.get('latency_ms')} ms"
            )
            if worker.get("warning"):
                click.echo(f"  {worker['warning']}")
        else:
            click.echo(f"Worker: {worker.get('error')}")
    traffic = data.get("traffic")
    if isinstance(traffic, dict):
        click.echo("This run: " + _relay_traffic(traffic))
        for session in traffic.get("sessions", [])[:10]:
            click.echo(
                f"  {session['session_id'][:24]}: {session['requests']} requests, uploaded {_size(session['sent_bytes'])}"
                f" of {_size(session['body_bytes'])}"
            )
    elif runtime is None:
        click.echo("Headway is not running: no traffic figures.")


@relay.command("disable")
@click.option("--forget", is_flag=True, help="Also forget the Worker's URL and delete the relay secret.")
def relay_disable(forget: bool) -> None:
    """Turn the relay off (requests go direct). The Worker stays in your Cloudflare account."""
    from proxy.relay.setup import disable_relay
    paths = _paths()
    store = _store(paths, strict=True)
    try:
        disable_relay(store, make_keychain(paths, store.current), forget=forget)
    except (KeychainError, SettingsError) as exc:
        raise _fail(exc) from exc
    click.echo("Relay off: requests go directly to the providers.")
    if forget:
        click.echo("Forgot its URL and secret. Delete the Worker in the Cloudflare dashboard if you no longer want it.")
    else:
        click.echo("Turn it back on with: headway relay setup")


# --------------------------------------------------------------------------- cache modes and dumps


@cli.group("cache")
def cache_group() -> None:
    """Anthropic prompt-cache mode."""


@cache_group.command("mode")
@click.argument("mode", required=False, type=click.Choice(["off", "explicit", "automatic", "hybrid"]))
def cache_mode(mode: str | None) -> None:
    """Show or set the Anthropic cache mode (hybrid is recommended for sessions with pauses)."""
    store = _store(_paths(), strict=mode is not None)
    if mode is None:
        click.echo(store.current.cache.anthropic_mode)
        return
    try:
        store.update(lambda s: setattr(s.cache, "anthropic_mode", mode))
    except SettingsError as exc:
        raise _fail(exc) from exc
    click.echo(f"Anthropic cache mode: {mode}")


@cli.command("dumps")
@click.argument("state", required=False, type=click.Choice(["on", "off", "status"]), default="status")
def dumps_command(state: str) -> None:
    """Turn request dumps on or off (they hold your prompts: sensitive), or show where they are."""
    paths = _paths()
    store = _store(paths, strict=state != "status")
    if state != "status":
        try:
            store.update(lambda s: setattr(s.dumps, "enabled", state == "on"))
        except SettingsError as exc:
            raise _fail(exc) from exc
    settings = store.current
    folder = paths.dumps_dir
    files = [f for f in folder.glob("*") if f.is_file()] if folder.exists() else []
    size = sum(f.stat().st_size for f in files)
    click.echo(
        f"dumps {'on' if settings.dumps.enabled else 'off'} · {folder} · "
        f"{len(files)} files, {size / 1e6:.1f} MB of {settings.dumps.max_mb} MB"
    )


def main() -> None:
    """The ``headway`` command. A known failure ends in one message with its fix; an unknown one in a short message
    and a crash report; never in a traceback (:mod:`tray.failures`)."""
    try:
        cli(prog_name="headway")
    except BrokenPipeError:  # `headway doctor | head -1`: the reader left; nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(1) from None
    except Exception as exc:
        from .failures import handle

        try:
            paths: Paths | None = _paths()
        except Exception:
            paths = None
        raise SystemExit(handle(exc, paths)) from None


if __name__ == "__main__":
    main()
