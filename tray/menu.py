"""The tray menu as plain data, built from one status snapshot and the settings in force.

Its header and account lines are the status ``summary``'s (:mod:`proxy.routing.summary`): the same words as the
tooltip and ``headway status``, judged once by the engine.

:func:`build` returns a tree of :class:`Entry` — text, checked state, and an action to run — with no toolkit in
sight, so tests read it directly; :func:`to_pystray` turns it into pystray items at the last moment. Actions are
methods of an :class:`Actions` object; the tray runs them on its action thread, never on the tray thread.

Settings the menu flips are listed once in :data:`CONTROLS`. A control whose setting does not exist in
``proxy.config.settings.Settings`` is left out, so adding one — keep-warm, say — is one line here once the setting exists::

    Toggle("keep_warm.enabled", "Keep prompt caches warm"),

Choices take their values from the setting's ``Literal`` type: a new routing mode shows up by itself.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from pydantic import BaseModel

from proxy.config.settings import Settings

__all__ = [
    "AGENTS",
    "CONTROLS",
    "SEPARATOR",
    "Actions",
    "Choice",
    "Entry",
    "MenuView",
    "Toggle",
    "build",
    "choice_values",
    "connection_text",
    "get_setting",
    "set_setting",
    "signature",
    "to_pystray",
]


@dataclass(frozen=True)
class Toggle:
    path: str
    text: str


@dataclass(frozen=True)
class Choice:
    path: str
    text: str
    labels: Mapping[str, str] = field(default_factory=dict)


CONTROLS: tuple[Toggle | Choice, ...] = (
    Choice(
        "routing.mode",
        "Routing",
        {
            "main-first": "Main account first",
            "fallback-first": "Fallback accounts first",
            "sticky": "Sticky: a session keeps its account",
        },
    ),
    Choice(
        "cache.anthropic_mode",
        "Anthropic prompt cache",
        {
            "off": "Off",
            "explicit": "Explicit (the agent's own marks)",
            "automatic": "Automatic",
            "hybrid": "Hybrid (recommended)",
        },
    ),
    Toggle("dumps.enabled", "Record request dumps"),
)

#: Agents "Connect an agent" has connection settings for: (key, menu text).
AGENTS: tuple[tuple[str, str], ...] = (
    ("opencode", "OpenCode"),
    ("pi", "Pi"),
    ("codex", "Codex CLI"),
    ("claude", "Claude Code"),
)


# --------------------------------------------------------------------------- settings by dotted path


def _field_annotation(model: type[BaseModel], path: str) -> Any:
    """The type annotation of the setting at ``path``, or None when there is no such setting."""
    annotation: Any = model
    for part in path.split("."):
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        info = annotation.model_fields.get(part)
        if info is None:
            return None
        annotation = info.annotation
    return annotation


def choice_values(path: str, model: type[BaseModel] = Settings) -> tuple[str, ...]:
    """The allowed values of a Literal setting (empty when the setting does not exist or is not a Literal)."""
    annotation = _field_annotation(model, path)
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(str(v) for v in typing.get_args(annotation))
    return ()


def _is_bool(path: str, model: type[BaseModel] = Settings) -> bool:
    annotation = _field_annotation(model, path)
    return annotation is bool or (
        isinstance(annotation, types.UnionType) and bool in typing.get_args(annotation)
    )


def get_setting(settings: BaseModel, path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


def set_setting(settings: BaseModel, path: str, value: Any) -> None:
    """Assign one setting in place (validated on assignment). Used inside ``SettingsStore.update``."""
    *parents, last = path.split(".")
    target: Any = settings
    for part in parents:
        target = getattr(target, part)
    setattr(target, last, value)


def available_controls(model: type[BaseModel] = Settings) -> list[Toggle | Choice]:
    return [
        c
        for c in CONTROLS
        if (isinstance(c, Toggle) and _is_bool(c.path, model))
        or (isinstance(c, Choice) and choice_values(c.path, model))
    ]


# --------------------------------------------------------------------------- the menu


class Actions(Protocol):
    """What menu items do. The tray's implementation runs each on its action thread."""

    def set_setting(self, path: str, value: Any) -> None: ...
    def set_paused(self, paused: bool) -> None: ...
    def open_settings(self) -> None: ...
    def refresh_quota(self) -> None: ...
    def open_settings_file(self) -> None: ...
    def connect_agent(self, agent: str) -> None: ...
    def set_autostart(self, enabled: bool) -> None: ...
    def open_logs(self) -> None: ...
    def check_setup(self) -> None: ...
    def quit(self) -> None: ...


@dataclass(frozen=True)
class MenuView:
    """Everything the menu shows, gathered off the tray thread."""

    status: Mapping[str, Any]
    settings: Settings
    #: None: launch at login is not available here.
    autostart: bool | None = None
    #: None: the engine cannot pause yet (the item is hidden).
    paused: bool | None = None
    now: float = 0.0


@dataclass(frozen=True)
class Entry:
    text: str
    action: Callable[[], None] | None = None
    checked: bool | None = None
    radio: bool = False
    enabled: bool = True
    default: bool = False
    submenu: tuple[Entry, ...] | None = None

    @property
    def is_separator(self) -> bool:
        return self is SEPARATOR


SEPARATOR = Entry("----")


def _account_entries(view: MenuView, actions: Actions) -> list[Entry]:
    summary = view.status.get("summary") or {}
    header = Entry(str(summary.get("headline") or "Headway"), actions.open_settings)
    accounts = list(summary.get("accounts") or ())
    if not accounts:
        return [header, Entry("No accounts yet — add one in settings", actions.open_settings)]
    return [
        header,
        *(
            Entry(("● " if a.get("serving") else "○ ") + str(a.get("line")), actions.open_settings)
            for a in accounts
        ),
    ]


def _control_entry(control: Toggle | Choice, settings: Settings, actions: Actions) -> Entry:
    current = get_setting(settings, control.path)
    if isinstance(control, Toggle):
        return Entry(
            control.text, partial(actions.set_setting, control.path, not current), checked=bool(current)
        )
    options = tuple(
        Entry(
            control.labels.get(value, value),
            partial(actions.set_setting, control.path, value),
            checked=value == current,
            radio=True,
        )
        for value in choice_values(control.path)
    )
    shown = control.labels.get(str(current), str(current))
    return Entry(f"{control.text}: {shown}", submenu=options)


def build(view: MenuView, actions: Actions) -> tuple[Entry, ...]:
    entries: list[Entry] = _account_entries(view, actions)
    if view.status.get("settings_error"):
        entries.append(Entry("⚠ Settings file has errors — open it", actions.open_settings_file))
    if view.status.get("listen_error"):
        entries.append(Entry(f"⚠ {view.status['listen_error']}", actions.open_settings))
    url = view.status.get("url")
    if url:
        entries.append(Entry(f"Gateway: {url}", enabled=False))
    entries.append(SEPARATOR)
    entries.append(Entry("Refresh quota now", actions.refresh_quota))
    if view.paused is not None:
        entries.append(
            Entry("Resume gateway", partial(actions.set_paused, False))
            if view.paused
            else Entry("Pause gateway", partial(actions.set_paused, True))
        )
    entries.extend(_control_entry(c, view.settings, actions) for c in available_controls())
    entries.append(SEPARATOR)
    entries.append(Entry("Open settings…", actions.open_settings, default=True))
    entries.append(
        Entry(
            "Connect an agent",
            submenu=tuple(Entry(text, partial(actions.connect_agent, key)) for key, text in AGENTS),
        )
    )
    if view.autostart is not None:
        entries.append(
            Entry(
                "Launch at login", partial(actions.set_autostart, not view.autostart), checked=view.autostart
            )
        )
    entries.append(Entry("Check setup…", actions.check_setup))
    entries.append(Entry("Open logs folder", actions.open_logs))
    entries.append(SEPARATOR)
    entries.append(Entry("Quit Headway", actions.quit))
    return tuple(entries)


def signature(entries: Iterable[Entry]) -> tuple[Any, ...]:
    """What the user sees; equal signatures need no menu rebuild."""
    return tuple(
        (e.text, e.checked, e.enabled, e.default, None if e.submenu is None else signature(e.submenu))
        for e in entries
    )


def to_pystray(
    entries: Sequence[Entry], pystray: Any, run: Callable[[str, Callable[[], None]], None]
) -> list[Any]:
    """pystray items for ``entries``; a click calls ``run(text, action)`` (which must return at once)."""
    items: list[Any] = []
    for entry in entries:
        if entry.is_separator:
            items.append(pystray.Menu.SEPARATOR)
        elif entry.submenu is not None:
            items.append(
                pystray.MenuItem(
                    entry.text, pystray.Menu(*to_pystray(entry.submenu, pystray, run)), enabled=entry.enabled
                )
            )
        else:
            action = entry.action
            items.append(
                pystray.MenuItem(
                    entry.text,
                    None if action is None else partial(_clicked, run, entry.text, action),
                    checked=None if entry.checked is None else (lambda item, c=entry.checked: c),
                    radio=entry.radio,
                    enabled=entry.enabled and action is not None,
                    default=entry.default,
                )
            )
    return items


def _clicked(
    run: Callable[[str, Callable[[], None]], None],
    text: str,
    action: Callable[[], None],
    icon: Any,
    item: Any,
) -> None:
    # A partial, not a lambda: pystray counts a lambda's parameters (defaults included) to decide how to call it.
    run(text, action)


# --------------------------------------------------------------------------- "Connect an agent"


def connection_text(agent: str, base_url: str, key: str) -> str:
    """Settings that point ``agent`` at the gateway, ready to paste."""
    v1 = f"{base_url}/v1"
    if agent == "opencode":
        config = {
            "$schema": "https://opencode.ai/config.json",
            "provider": {
                "anthropic": {"options": {"baseURL": v1, "apiKey": key}},
                "openai": {"options": {"baseURL": v1, "apiKey": key}},
            },
        }
        return (
            "# OpenCode: put this in opencode.json (project) or ~/.config/opencode/opencode.json\n"
            + json.dumps(config, indent=2)
        )
    if agent == "pi":
        models = {"providers": {"anthropic": {"baseUrl": base_url}, "openai": {"baseUrl": v1}}}
        return (
            "# Pi: ~/.pi/agent/models.json (or $PI_CODING_AGENT_DIR/models.json)\n"
            + json.dumps(models, indent=2)
            + f"\n# and in your shell:\nexport ANTHROPIC_API_KEY={key}\nexport OPENAI_API_KEY={key}\n"
        )
    if agent == "codex":
        return (
            "# Codex CLI: ~/.codex/config.toml\n"
            'model_provider = "headway"\n\n'
            "[model_providers.headway]\n"
            'name = "Headway"\n'
            f'base_url = "{v1}"\n'
            'env_key = "HEADWAY_KEY"\n'
            'wire_api = "responses"\n'
            "supports_websockets = true\n\n"
            f"# and in your shell:\nexport HEADWAY_KEY={key}\n"
        )
    if agent == "claude":
        return (
            '# Claude Code (API-key mode): in your shell, or under "env" in ~/.claude/settings.json\n'
            f"export ANTHROPIC_BASE_URL={base_url}\n"
            f"export ANTHROPIC_API_KEY={key}\n"
        )
    raise ValueError(f"unknown agent {agent!r}")
