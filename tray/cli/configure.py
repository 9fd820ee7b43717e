"""`headway configure <agent>`: point an agent's own config at Headway (:mod:`web_ui.agents`)."""

from __future__ import annotations

from pathlib import Path

import click

from proxy.secrets.keychain import KeychainError, ensure_access_key

from ..app import make_keychain, read_runtime
from .root import cli, env_paths, fail, load_store


@cli.command()
@click.argument("agent", type=click.Choice(["opencode", "pi", "codex", "claude-code", "openhands", "aider"]))
@click.option(
    "--print", "print_only", is_flag=True, help="Print the settings to paste instead of editing any file."
)
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

    paths = env_paths()
    store = load_store(paths)
    runtime = read_runtime(paths)
    gateway = store.current.gateway
    if runtime:
        base_url = str(runtime["url"])
    elif gateway.port == 0:
        raise click.ClickException(
            "gateway.port is 0 (a new port at each start): start Headway first, or set a port"
        )
    else:
        host = f"[{gateway.host}]" if ":" in gateway.host else gateway.host
        base_url = f"http://{host}:{gateway.port}"
    try:
        endpoint = endpoint_for(base_url, ensure_access_key(make_keychain(paths, store.current)))
    except KeychainError as exc:
        raise fail(exc) from exc
    info = AGENTS[agent]
    if print_only or not info.writes:
        click.echo(snippet(agent, endpoint), nl=False)
        if not info.writes:
            click.echo(
                f"{info.title} keeps its own settings: set these in the environment it runs in.", err=True
            )
        for override in env_overrides(agent, endpoint.key):
            click.echo(f"warning: {override.message()}", err=True)
        return
    try:
        result = write(plan(agent, endpoint, path=file_path))
    except (AgentConfigError, OSError) as exc:
        raise fail(exc) from exc
    if result.changed:
        click.echo(f"wrote {result.path}" + (f" (backup: {result.backup})" if result.backup else ""))
    else:
        click.echo(f"{result.path} already points at Headway; nothing changed")
    warnings = {o.message() for o in result.overrides}
    for note in result.notes:
        click.echo(f"{'warning' if note in warnings else 'note'}: {note}", err=True)
    if gateway.port == 0:
        click.echo(
            "note: gateway.port is 0, so the port changes at each start; run this again after a restart",
            err=True,
        )
    click.echo(f"then run: {info.run_hint}", err=True)
