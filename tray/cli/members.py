"""`headway keys add/list/revoke`: access keys for the members of a team using one gateway.

A key is printed once, when it is made, and stored only as its SHA-256 (proxy/secrets/members.py). With shared
state configured (team mode) Redis holds the members every replica serves, and a change reaches them all within a
second; this machine's members.json is updated too. Without it, members.json is the list and the running gateway
re-reads it within a second.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import click

from proxy.config.paths import Paths
from proxy.config.settings import SettingsError, shared_state_url
from proxy.secrets.members import Member, MemberFile, MembersError, check_name
from proxy.shared.admin import MemberAdmin, SharedStateUnreachable
from proxy.shared.records import Names

from .root import cli, env_paths, fail, load_store


def _admin(paths: Paths) -> MemberAdmin | None:
    settings = load_store(paths).current
    try:
        url = shared_state_url(settings, os.environ)
    except SettingsError as exc:
        raise fail(exc) from exc
    return None if url is None else MemberAdmin(url, Names(settings.shared_state.namespace))


def _change_file(paths: Paths, fn: Callable[[dict[str, Member]], object]) -> None:
    try:
        MemberFile(paths.members_file).change(fn)
    except (MembersError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


def _current(paths: Paths, admin: MemberAdmin | None) -> list[Member]:
    try:
        if admin is not None and admin.seeded():
            return admin.members()
        return MemberFile(paths.members_file).load()
    except (MembersError, SharedStateUnreachable) as exc:
        raise click.ClickException(str(exc)) from exc


@cli.group("keys")
def keys_group() -> None:
    """Access keys for team members (each request is logged under its member's name)."""


@keys_group.command("add")
@click.argument("name")
@click.option(
    "--daily-usd",
    type=float,
    default=None,
    help="Refuse this member's requests for the rest of the "
    "UTC day once their estimated spend reaches this many dollars.",
)
def keys_add(name: str, daily_usd: float | None) -> None:
    """Make a key for member NAME and print it (shown this once; only its hash is kept)."""
    paths = env_paths()
    paths.ensure()
    try:
        member, key = Member.create(name, daily_usd=daily_usd)
    except MembersError as exc:
        raise click.ClickException(str(exc)) from exc
    admin = _admin(paths)
    try:
        existing = _current(paths, admin)
        if any(m.name == name for m in existing):
            raise click.ClickException(
                f"member {name!r} already has a key: `headway keys revoke {name}` first"
            )
        if admin is not None:
            if not admin.seeded():
                admin.put_many(existing)  # this machine's members first, so none is lost
            admin.put(member)
    except SharedStateUnreachable as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if admin is not None:
            admin.close()
    _change_file(paths, lambda members: members.__setitem__(member.name, member))
    click.echo(key)
    cap = f", capped at ${daily_usd:g} a day" if daily_usd is not None else ""
    click.echo(
        f"Member {name} added{cap}. The key above is shown only now: give it to {name} as their agent's API key.",
        err=True,
    )


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def keys_list(as_json: bool) -> None:
    """The members and their daily caps (never their keys)."""
    paths = env_paths()
    admin = _admin(paths)
    try:
        members = _current(paths, admin)
    finally:
        if admin is not None:
            admin.close()
    if as_json:
        click.echo(
            json.dumps(
                [{"name": m.name, "created_at": m.created_at, "daily_usd": m.daily_usd} for m in members],
                indent=2,
            )
        )
        return
    if not members:
        click.echo("No member keys. Add one with `headway keys add NAME`.")
        return
    for m in members:
        created = time.strftime("%Y-%m-%d", time.localtime(m.created_at))
        cap = f"  cap ${m.daily_usd:g}/day" if m.daily_usd is not None else ""
        click.echo(f"{m.name}  added {created}{cap}")


@keys_group.command("revoke")
@click.argument("name")
def keys_revoke(name: str) -> None:
    """Revoke member NAME's key (every replica refuses it within a second or two)."""
    paths = env_paths()
    try:
        check_name(name)
    except MembersError as exc:
        raise click.ClickException(str(exc)) from exc
    admin = _admin(paths)
    try:
        existing = _current(paths, admin)
        if not any(m.name == name for m in existing):
            raise click.ClickException(f"no member named {name!r} (`headway keys list` shows them)")
        if admin is not None:
            admin.remove(name)
    except SharedStateUnreachable as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if admin is not None:
            admin.close()
    _change_file(paths, lambda members: members.pop(name, None))
    click.echo(f"Revoked {name}'s key.")
