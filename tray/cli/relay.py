"""`headway relay`: the optional relay through the user's own Cloudflare Worker (:mod:`proxy.relay`)."""

from __future__ import annotations

import json
from typing import Literal

import click

from proxy.config.settings import SettingsError
from proxy.secrets.keychain import KeychainError

from ..app import make_keychain, read_runtime
from .root import cli, env_paths, fail, load_store, read_secret, step
from .status import byte_size, fetch_status, relay_traffic


@cli.group()
def relay() -> None:
    """The optional relay through your own Cloudflare Worker: later turns of a session upload only a patch."""


@relay.command("setup")
@click.option(
    "--account-id",
    default=None,
    help="Your Cloudflare account id (Workers & Pages overview); prompted if missing.",
)
@click.option(
    "--api-token-stdin", is_flag=True, help="Read the Cloudflare API token from standard input, not a prompt."
)
@click.option(
    "--name",
    "worker_name",
    default=None,
    help="The Worker's name (default: the current one, or headway-relay).",
)
@click.option(
    "--storage",
    type=click.Choice(["durable_object", "kv"]),
    default="durable_object",
    show_default=True,
    help="Where the Worker keeps each session's last body.",
)
@click.option(
    "--transport", type=click.Choice(["http", "websocket"]), default=None, help="How Headway talks to it."
)
@click.option(
    "--rotate-secret",
    is_flag=True,
    help="Make a new relay secret instead of keeping the current one; the Worker refuses the old one as soon as "
    "the upload is done. The answer to a secret you think leaked.",
)
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

    The Worker may call only the provider origins in force now (settings, HEADWAY_*_BASE_URL, accounts' own base
    URLs) and keeps a session's last body for relay.ttl_hours: run setup again after changing either.
    """
    from proxy.relay.setup import RelaySetupError, setup_relay

    paths = env_paths()
    paths.ensure()
    store = load_store(paths, strict=True)
    current = store.current.relay
    account = (account_id or current.account_id or click.prompt("Cloudflare account id")).strip()
    token = read_secret(api_token_stdin, "Cloudflare API token")
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
            progress=step,
        )
    except (RelaySetupError, KeychainError, SettingsError) as exc:
        raise fail(exc) from exc
    verb = "Deployed" if info.created else "Upgraded"
    click.echo(
        f"{verb} Worker {info.worker_name} {info.worker_version} at {info.url} ({info.storage.replace('_', ' ')})."
    )
    click.echo(
        f"It may call: {', '.join(info.upstreams)}; it keeps a session's last body {info.ttl_seconds // 60} min."
    )
    click.echo(
        "The relay secret is in the keychain"
        + (" (a new one: the old one is refused from now on)" if info.secret_rotated else "")
        + "; the API token was not kept. The relay is on."
    )
    if info.detail:
        click.echo(info.detail)
    if read_runtime(paths):
        click.echo("The running Headway picks the relay up by itself.")


@relay.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-probe", is_flag=True, help="Do not ask the Worker.")
def relay_status_command(as_json: bool, no_probe: bool) -> None:
    """Whether the relay is on, whether its Worker answers, and what it saved in this run."""
    from proxy.relay.deployed import relay_status

    paths = env_paths()
    store = load_store(paths)
    try:
        data = relay_status(store, make_keychain(paths, store.current), probe=not no_probe)
    except KeychainError as exc:
        raise fail(exc) from exc
    runtime = read_runtime(paths)
    running = fetch_status(paths, runtime) if runtime else None
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
    click.echo(
        f"Secret: {'in the keychain' if data['secret_in_keychain'] else 'MISSING from the keychain (run setup)'}"
    )
    click.echo(
        f"Upstreams: {', '.join(data['upstreams'] or []) or 'not bound (set up before the allowlist)'}"
    )
    worker = data.get("worker")
    if isinstance(worker, dict):
        if worker.get("ok"):
            click.echo(
                f"Worker: {worker.get('worker_version')} (protocol {worker.get('protocol')}, {worker.get('storage')}),"
                f" answered in {worker.get('latency_ms')} ms"
            )
            if "sessions" in worker:
                click.echo(
                    f"  keeps {_count(int(worker['sessions']), 'session')},"
                    f" each for {worker.get('ttl_seconds', 0) // 60} min"
                )
            if worker.get("warning"):
                click.echo(f"  {worker['warning']}")
        else:
            click.echo(f"Worker: {worker.get('error')}")
    for warning in data.get("warnings", []):
        click.echo(f"Out of date: {warning}")
    traffic = data.get("traffic")
    if isinstance(traffic, dict):
        click.echo("This run: " + relay_traffic(traffic))
        if traffic.get("unbound_upstreams"):
            click.echo(
                "  went direct (the Worker was not deployed for them): "
                + ", ".join(traffic["unbound_upstreams"])
            )
        for session in traffic.get("sessions", [])[:10]:
            click.echo(
                f"  {session['session_id'][:24]}: {session['requests']} requests, uploaded {byte_size(session['sent_bytes'])}"
                f" of {byte_size(session['body_bytes'])}"
            )
    elif runtime is None:
        click.echo("Headway is not running: no traffic figures.")


@relay.command("forget")
def relay_forget() -> None:
    """Delete every session body the Worker keeps (they would expire after relay.ttl_hours anyway)."""
    from proxy.relay.deployed import forget_sessions
    from proxy.relay.setup import RelaySetupError

    paths = env_paths()
    store = load_store(paths)
    try:
        result = forget_sessions(store, make_keychain(paths, store.current))
    except (RelaySetupError, KeychainError) as exc:
        raise fail(exc) from exc
    unit = "stored lane" if result.get("storage") == "kv" else "session"
    click.echo(f"The Worker deleted {_count(int(result['forgotten']), unit)}; it keeps nothing now.")
    click.echo("Each session's next request uploads its whole body again.")


@relay.command("disable")
@click.option("--forget", is_flag=True, help="Also forget the Worker's URL and delete the relay secret.")
def relay_disable(forget: bool) -> None:
    """Turn the relay off (requests go direct). The Worker stays in your Cloudflare account."""
    from proxy.relay.deployed import disable_relay

    paths = env_paths()
    store = load_store(paths, strict=True)
    try:
        disable_relay(store, make_keychain(paths, store.current), forget=forget)
    except (KeychainError, SettingsError) as exc:
        raise fail(exc) from exc
    click.echo("Relay off: requests go directly to the providers.")
    if forget:
        click.echo(
            "Forgot its URL and secret. Delete the Worker in the Cloudflare dashboard if you no longer want it."
        )
    else:
        click.echo("Turn it back on with: headway relay setup")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
