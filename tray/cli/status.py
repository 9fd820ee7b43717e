"""`headway status`: the running instance's status, or the last saved state when it does not answer."""

from __future__ import annotations

import json
import time
from typing import Any

import click
import httpx

from proxy import __version__
from proxy.config.paths import Paths
from proxy.durations import format_duration
from proxy.routing.state import RuntimeState
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
    from proxy.status import status_snapshot

    store = load_store(paths)
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


def _format_window(w: dict[str, Any]) -> str:
    left = w.get("remaining_percent")
    text = f"{w['name']}: " + ("?" if left is None else f"{left:g}% left")
    if w.get("limit") is not None and w.get("remaining") is not None:
        text += f" ({w['remaining']:g}/{w['limit']:g})"
    if w.get("resets_in_seconds") is not None:
        text += f", resets in {format_duration(w['resets_in_seconds'])}"
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
        lines.append("Relay: " + relay_traffic(relay))
    if not data["accounts"]:
        lines.append("No accounts. Add one with: headway accounts add anthropic --label main")
    for a in data["accounts"]:
        health = a["health"].replace("_", " ")
        if a.get("blocked_for_seconds") is not None:
            health += f" for {format_duration(a['blocked_for_seconds'])}"
        lines.append(f"- {a['label']} [{a['id']}, {a['kind']}]: {health}")
        if a.get("detail") and a["health"] not in ("healthy", "disabled"):
            lines.append(f"    {a['detail']}")
        quota = a.get("quota")
        if quota:
            age = format_duration(max(0.0, time.time() - quota["updated_at"]))
            lines.append(
                f"    quota (as of {age} ago): " + " · ".join(_format_window(w) for w in quota["windows"])
            )
        else:
            lines.append("    quota: unknown until the first request")
    return "\n".join(lines)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--refresh", is_flag=True, help="Ask each ChatGPT account's usage now (needs a running Headway)."
)
def status(as_json: bool, refresh: bool) -> None:
    """Accounts, health, quota windows, cooldowns and reset countdowns."""
    paths = env_paths()
    runtime = read_runtime(paths)
    data, problem = _ask_status(paths, runtime, refresh) if runtime else (None, "")
    if refresh and data is None and not problem:
        click.echo("Headway is not running: showing the last known quota.", err=True)
    if data is None:
        data = _offline_status(paths)
        if runtime and problem:
            data.update(running=True, url=runtime.get("url"), pid=runtime.get("pid"), status_error=problem)
    click.echo(json.dumps(data, indent=2) if as_json else format_status(data))


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
