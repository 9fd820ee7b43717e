"""The `headway` group itself and what its commands share: the paths, the settings store, failures explained."""

from __future__ import annotations

import importlib
import math
import sys
from typing import Any

import click

from proxy import __version__
from proxy.config.paths import Paths
from proxy.config.settings import SettingsError
from proxy.config.store import SettingsStore


def env_paths() -> Paths:
    return Paths.from_env()


def load_store(paths: Paths, *, strict: bool = False) -> SettingsStore:
    store = SettingsStore.for_paths(paths)
    store.load()
    if strict and store.error is not None:
        raise _unusable(store, store.error)
    return store


def _unusable(store: SettingsStore, error: SettingsError) -> click.ClickException:
    """Nothing was changed because the settings file cannot be used: what is wrong with it, and the way back."""
    text = f"the settings file cannot be used, so nothing was changed:\n{error}"
    if "headway settings restore" not in text and store.last_good.is_file():
        text += (
            "\n  fix: correct the file, or put the last good settings back with `headway settings restore`"
        )
    return click.ClickException(text)


def fail(exc: Exception) -> click.ClickException:
    from ..failures import explain

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


def read_secret(stdin: bool, prompt: str) -> str:
    if stdin:
        value = sys.stdin.readline().strip()
    else:
        value = click.prompt(prompt, hide_input=True).strip()
    if not value:
        raise click.ClickException("no key given")
    return value


# Which module of this package defines each top-level command. A command's module (and what it imports) loads only
# when that command runs, or for `--help`: `headway serve` never imports what `usage`, `relay` or `configure` need.
COMMAND_MODULES = {
    "accounts": "accounts",
    "analyze": "analyze",
    "autostart": "autostart",
    "cache": "toggles",
    "configure": "configure",
    "doctor": "doctor",
    "dumps": "toggles",
    "key": "keys",
    "keys": "members",
    "login": "login",
    "models": "models",
    "relay": "relay",
    "secrets": "keys",
    "serve": "serve",
    "settings": "settings",
    "status": "status",
    "usage": "usage",
}


class LazyGroup(click.Group):
    """A group whose commands register themselves (``@cli.command()``) when their module is first imported."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            importlib.import_module(f"{__package__}.{module}")
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, invoke_without_command=True)
@click.version_option(__version__, prog_name="headway")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Headway: run your coding agents on your own ChatGPT, OpenAI and Anthropic accounts.

    Run bare `headway` (no command) to start the tray icon and the gateway; without a display it runs headless.
    `headway status` shows how the accounts are doing.
    """
    from .log import log_cli_to_file

    log_cli_to_file(
        env_paths().log_dir
    )  # problems reach the user once, as the command's message; records go to the log
    if ctx.invoked_subcommand is None:
        from ..launch import run_tray_or_headless

        run_tray_or_headless(env_paths())


def step(message: str) -> None:
    """A long operation's progress line: "Exchanging the code…"."""
    click.echo(message[:1].upper() + message[1:] + "…")
