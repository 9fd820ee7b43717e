"""`headway status`: the running instance's status, or the last saved state when it does not answer."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import click
import httpx

from proxy import __version__
from proxy.config.paths import Paths
from proxy.durations import format_duration
from proxy.features.request_rows import failing_text, set_aside_text
from proxy.routing.state import RuntimeState
from proxy.routing.summary import CRITICAL_PERCENT, LOW_PERCENT, health_summary, shown_percent, window_label
from proxy.secrets.keychain import ACCESS_KEY, KeychainError

from ..app import make_keychain, read_runtime
from .root import cli, env_paths, load_store

STATUS_TIMEOUT = 5.0


def _ask_status(
    paths: Paths, runtime: dict[str, Any], refresh: bool = False
) -> tuple[dict[str, Any] | None, str]:
    """The running instance's /status, or None and what went wrong (it may be running and still not answer)."""
    store = load_store(paths)
    timeout = 30.0 if refresh else STATUS_TIMEOUT
    try:
        key_value = make_keychain(paths, store.current).get(ACCESS_KEY)
    except KeychainError as exc:
        return None, f"cannot read the access key: {exc}"
    url = f"{runtime['url']}/status"
    try:
        response = httpx.get(
            url,
            params={"refresh": "1"} if refresh else None,
            headers={"x-api-key": key_value or ""},
            timeout=timeout,
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


def fetch_status(paths: Paths, runtime: dict[str, Any], refresh: bool = False) -> dict[str, Any] | None:
    return _ask_status(paths, runtime, refresh)[0]


def _offline_status(paths: Paths) -> dict[str, Any]:
    from proxy.features.budgets import Budgets
    from proxy.features.request_log import RequestLog, RequestLogError
    from proxy.status import status_snapshot

    store = load_store(paths)
    state = RuntimeState.load(paths.state_file)
    now = time.time()
    try:  # the spend against each budget, as the request log has it
        budgets = Budgets.from_log(RequestLog(paths.request_log), store.current, now).snapshot(now)
    except RequestLogError as exc:
        click.echo(f"Budgets not shown: {exc}", err=True)
        budgets = None
    accounts = status_snapshot(store.current, state, now, {}, budgets=budgets)
    return {
        "version": __version__,
        "running": False,
        "url": None,
        "routing": store.current.routing.mode,
        "settings_file": str(paths.settings_file),
        "settings_error": None if store.error is None else store.error.problems,
        "accounts": accounts,
        "summary": health_summary(
            accounts, now, paused=store.current.gateway.paused, routing=store.current.routing.mode
        ),
    }


WIDTH = 80
BAR = 10
#: Summary / account state → colour on a terminal.
_COLORS = {
    "healthy": "green",
    "low": "yellow",
    "critical": "red",
    "exhausted": "red",
    "needs_login": "magenta",
    "paused": "bright_black",
    "unknown": "bright_black",
    "disabled": "bright_black",
}
_MARKS = {"healthy": "●", "low": "●", "critical": "●", "exhausted": "■", "needs_login": "▲", "paused": "‖"}


def use_color(stream: Any = None) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org) or ``TERM=dumb``."""
    stream = sys.stdout if stream is None else stream
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _fit(text: str, width: int = WIDTH) -> str:
    """One line cut to ``width`` (for lines whose end matters least: bars, the summary's countdown tail)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _wrap(text: str, indent: str = "") -> list[str]:
    """Wrapped to 80 columns, nothing lost (problems, fixes, paths): continuation lines indented under the first."""
    lead = len(text) - len(text.lstrip(" "))
    return textwrap.wrap(text, WIDTH, subsequent_indent=" " * lead + indent, break_on_hyphens=False) or [text]


def _bar(percent: float) -> str:
    filled = max(0, min(BAR, round(percent / 100 * BAR)))
    return "█" * filled + "░" * (BAR - filled)


def _window_row(w: dict[str, Any], paint: Callable[[str, str], str]) -> str:
    left = float(w["remaining_percent"])
    level = (
        "critical"
        if left <= CRITICAL_PERCENT
        else "low"
        if left <= LOW_PERCENT or w.get("hot")
        else "healthy"
    )
    row = f"      {window_label(w['name'])[:8]:<8} {_bar(left)} {shown_percent(left):>3}%"
    if w.get("limit") is not None and w.get("remaining") is not None:
        row += f" ({w['remaining']:g}/{w['limit']:g})"
    if w.get("resets_in_seconds") is not None:
        row += f"  resets in {format_duration(w['resets_in_seconds'])}"
    if w.get("runs_out_in_seconds") is not None:
        row += f", runs out in ~{format_duration(w['runs_out_in_seconds'])}"
    row = _fit(row)
    bar_at = row.index(_bar(left))
    return row[:bar_at] + paint(row[bar_at : bar_at + BAR], level) + row[bar_at + BAR :]


def format_status(data: dict[str, Any], *, color: bool = False, now: float | None = None) -> str:
    """``headway status`` for people: the summary line first, then one short block per account, in 80 columns."""
    now = time.time() if now is None else now

    def paint(text: str, state: str, bold: bool = False) -> str:
        return click.style(text, fg=_COLORS.get(state), bold=bold) if color else text

    summary = data.get("summary") or {}
    state = str(summary.get("state") or "unknown")
    lines = [
        paint(
            _fit(f"{_MARKS.get(state, '?')} {summary.get('headline') or 'Quota unknown'}"), state, bold=True
        )
    ]
    if data.get("status_error"):
        lines.extend(_wrap(f"Headway {data['version']} — running at {data['url']} (pid {data.get('pid')})"))
        lines.extend(_wrap(f"  but {data['status_error']}; showing the last saved state.", "  "))
    elif data.get("running"):
        lines.extend(_wrap(f"Headway {data['version']} — running at {data['url']} (pid {data.get('pid')})"))
    else:
        lines.append(f"Headway {data['version']} — not running")
    if data.get("listen_error"):
        lines.extend(_wrap(f"Gateway port: {data['listen_error']}", "  "))
    if data.get("request_log_set_aside"):
        lines.extend(_wrap(f"Request log: {set_aside_text(data['request_log_set_aside'])}", "  "))
    if data.get("request_log_failing"):
        lines.extend(_wrap(f"Request log: {failing_text(data['request_log_failing'])}", "  "))
    lines.append(f"Routing: {data['routing']}")
    if data.get("settings_error"):
        lines.append("Settings file is INVALID — still using the last good settings:")
        lines.extend(line for p in data["settings_error"] for line in _wrap(f"  {p}", "  "))
    relay = data.get("relay")
    if isinstance(relay, dict) and (relay.get("enabled") or (relay.get("totals") or {}).get("requests")):
        lines.extend(_wrap("Relay: " + relay_traffic(relay), "  "))
    team = data.get("team")
    if isinstance(team, dict):
        lines.extend(line for text in _team_lines(team) for line in _wrap(text, "  "))
    if not data["accounts"]:
        lines.append("No accounts. Add one with: headway accounts add anthropic --label main")
    details = {a["id"]: a for a in data["accounts"]}
    for entry in summary.get("accounts") or ():
        account = details.get(entry["id"], {})
        mark = "●" if entry.get("serving") else "○"
        head = f"{mark} {entry['label']} ({account.get('kind', entry['family'])})"
        line = str(entry.get("line") or "")
        parts = line.split(" · ")
        status_text = " · ".join(parts[1:]) or entry["state"]
        if entry["windows"]:  # the windows get their own rows: say only the state (and why, when blocked)
            status_text = parts[1] if entry["state"] == "exhausted" else entry["state"].replace("_", " ")
        lines.extend(paint(line, entry["state"]) for line in _wrap(f"  {head}: {status_text}", "    "))
        if account.get("detail") and account.get("health") not in ("healthy", "disabled"):
            lines.extend(_wrap(f"      {account['detail']}"))
        lines.extend(_window_row(w, paint) for w in entry["windows"])
        quota = account.get("quota")
        if quota and entry["windows"]:
            lines.append(f"      (as of {format_duration(max(0.0, now - quota['updated_at']))} ago)")
        if account.get("budget"):
            lines.extend(_wrap("      " + format_budget(account["budget"]), "        "))
    return "\n".join(lines)


def format_budget(b: dict[str, Any]) -> str:
    """One line: spend against each cap, and what could not be priced."""
    parts = []
    if b.get("daily_usd"):
        parts.append(f"${b['spent_today_usd']:.2f} of ${b['daily_usd']:g} today")
    if b.get("monthly_usd"):
        parts.append(f"${b['spent_month_usd']:.2f} of ${b['monthly_usd']:g} this month")
    text = "budget: " + ", ".join(parts) + f" ({b['used_percent']:g}% used"
    text += (
        ", over budget)"
        if b["state"] == "over_budget"
        else (", warning)" if b["state"] == "warning" else ")")
    )
    if b.get("unpriced_models"):
        text += (
            f"; price unknown for {', '.join(b['unpriced_models'])}: "
            f"{b['unpriced_tokens']:,} tokens not counted in dollars"
        )
    return text


@cli.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output (the summary is under 'summary')."
)
@click.option(
    "--refresh", is_flag=True, help="Ask each ChatGPT account's usage now (needs a running Headway)."
)
def status(as_json: bool, refresh: bool) -> None:
    """The pool's health first, then each account's quota windows with bars and reset countdowns.

    Fits 80 columns; coloured on a terminal (not when piped, nor with NO_COLOR set).
    """
    paths = env_paths()
    runtime = read_runtime(paths)
    data, problem = _ask_status(paths, runtime, refresh) if runtime else (None, "")
    if refresh and data is None and not problem:
        click.echo("Headway is not running: showing the last known quota.", err=True)
    if data is None:
        data = _offline_status(paths)
        if runtime and problem:
            data.update(running=True, url=runtime.get("url"), pid=runtime.get("pid"), status_error=problem)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(format_status(data, color=use_color()), color=use_color())


def byte_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def relay_traffic(stats: dict[str, Any]) -> str:
    """One line: uploaded bytes against the bytes the provider received (the running instance's counters)."""
    totals = stats.get("totals") or {}
    state = "on" if stats.get("enabled") else "off"
    if not totals.get("requests"):
        return f"{state} ({stats.get('url')}), no request relayed yet"
    text = (
        f"{state}: uploaded {byte_size(totals['sent_bytes'])} for {byte_size(totals['body_bytes'])} of request bodies"
        f" ({totals.get('saved_percent')}% saved) over {totals['requests']} requests"
        f" ({totals.get('full_syncs', 0)} full, {totals.get('patches', 0)} patches"
    )
    if totals.get("resyncs"):
        text += f", {totals['resyncs']} resynced"
    if totals.get("failures"):
        text += f", {totals['failures']} went direct"
    return text + ")"


def _team_lines(team: dict[str, Any]) -> list[str]:
    """Team mode at a glance: the shared state's link and the member keys (nothing for a lone gateway)."""
    lines = []
    shared = team.get("shared_state")
    if isinstance(shared, dict):
        state = (
            "connected"
            if shared.get("connected")
            else f"NOT connected ({shared.get('last_error') or 'connecting'})"
        )
        lines.append(f"Shared state: {shared.get('url')} {state}")
    if team.get("members"):
        lines.append(f"Member keys: {team['members']}")
    if team.get("members_error"):
        lines.append(f"Member keys file problem: {team['members_error']}")
    return lines
