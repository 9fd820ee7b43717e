"""Point a coding agent at Headway by editing the agent's own configuration file — or print what to paste.

Used by ``headway configure <agent>`` and by the settings page's "Connect an agent" section; both do exactly this.

| agent        | file (override)                                          | what Headway sets                                     |
|--------------|----------------------------------------------------------|-------------------------------------------------------|
| opencode     | ``~/.config/opencode/opencode.json`` (``OPENCODE_CONFIG``) | ``provider.{anthropic,openai}.options.{baseURL,apiKey}`` |
| pi           | ``~/.pi/agent/models.json`` (``PI_CODING_AGENT_DIR``)    | ``providers.{anthropic,openai}.{baseUrl,apiKey}``     |
| codex        | ``~/.codex/config.toml`` (``CODEX_HOME``)                | ``model_provider = "headway"`` and ``[model_providers.headway]`` |
| claude-code  | ``~/.claude/settings.json`` (``CLAUDE_CONFIG_DIR``)      | ``env.ANTHROPIC_BASE_URL``, ``env.ANTHROPIC_AUTH_TOKEN`` |
| aider        | ``~/.aider.conf.yml``                                    | ``openai-api-base``, ``openai-api-key``, ``anthropic-api-key``, ``set-env: ANTHROPIC_BASE_URL=…`` |
| openhands    | none: printed only                                       | ``LLM_MODEL``, ``LLM_BASE_URL``, ``LLM_API_KEY``      |

OpenHands keeps its settings in its own store, whose format has changed between releases (GUI settings, the V1 CLI's
agent settings); the one interface documented across them is the ``LLM_*`` environment (headless, Docker, SDK), so
Headway prints that instead of guessing at a file.

Writing is careful:

* **merge, never overwrite**: only the keys above change; everything else in the file — other providers, models,
  comments in TOML and YAML — stays as it was. A file Headway cannot parse is left alone with an error.
* **backup first**: the previous file is copied next to it as ``<name>.headway-backup-<timestamp>`` (0600).
* **idempotent**: when the file already says what Headway would write, nothing is written and no backup is made.
* **atomic**: a temp file in the same folder, fsync, ``os.replace``; a symlinked config is written through to its
  target. The file is made owner-only, since it now holds the local access key.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import tomlkit
import tomlkit.exceptions
import tomlkit.items
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from proxy.config.paths import write_private_file

__all__ = [
    "AGENTS",
    "AgentConfigError",
    "AgentInfo",
    "Endpoint",
    "EnvOverride",
    "Plan",
    "WriteResult",
    "config_path",
    "configure",
    "endpoint_for",
    "env_overrides",
    "mask_key",
    "plan",
    "snippet",
    "write",
]


class AgentConfigError(Exception):
    """The agent's configuration cannot be edited safely; the message says why and what to do."""


@dataclass(frozen=True)
class AgentInfo:
    name: str
    title: str
    file_format: str  # json | toml | yaml | env
    writes: bool
    run_hint: str


AGENTS: dict[str, AgentInfo] = {
    a.name: a
    for a in (
        AgentInfo("opencode", "OpenCode", "json", True, "opencode -m anthropic/claude-sonnet-4-5"),
        AgentInfo("pi", "Pi", "json", True, "pi --model anthropic/claude-sonnet-4-5"),
        AgentInfo("codex", "Codex CLI", "toml", True, "codex"),
        AgentInfo("claude-code", "Claude Code", "json", True, "claude"),
        AgentInfo("openhands", "OpenHands", "env", False, "openhands (with these variables set)"),
        AgentInfo("aider", "aider", "yaml", True, "aider --model anthropic/claude-sonnet-4-5"),
    )
}

PROVIDER_ID = "headway"


@dataclass(frozen=True)
class Endpoint:
    """Where agents reach Headway: the gateway's root URL (no ``/v1``) and the local access key."""

    root: str
    key: str

    @property
    def v1(self) -> str:
        return self.root + "/v1"


def endpoint_for(base_url: str, key: str) -> Endpoint:
    """An endpoint agents on this machine can use: a wildcard bind address becomes 127.0.0.1."""
    parts = urlsplit(base_url.rstrip("/"))
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        netloc = f"127.0.0.1:{parts.port}" if parts.port else "127.0.0.1"
        parts = parts._replace(netloc=netloc)
    return Endpoint(root=urlunsplit(parts).rstrip("/"), key=key)


def mask_key(text: str, key: str) -> str:
    """``text`` with the access key replaced by a short, clearly masked form (for showing, not for pasting)."""
    return text.replace(key, key[:3] + "•" * 8 + key[-4:]) if key else text


# --------------------------------------------------------------------------- where each agent keeps its config


def _home(environ: Mapping[str, str]) -> Path:
    value = environ.get("HOME") or environ.get("USERPROFILE")
    return Path(value) if value else Path.home()


def config_path(name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """The file ``configure`` edits for agent ``name`` (None: the agent is configured by printing only)."""
    env = os.environ if environ is None else environ
    home = _home(env)
    if name == "opencode":
        if env.get("OPENCODE_CONFIG"):
            return Path(env["OPENCODE_CONFIG"]).expanduser()
        base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
        return base / "opencode" / "opencode.json"
    if name == "pi":
        base = (
            Path(env["PI_CODING_AGENT_DIR"]).expanduser()
            if env.get("PI_CODING_AGENT_DIR")
            else home / ".pi" / "agent"
        )
        return base / "models.json"
    if name == "codex":
        base = Path(env["CODEX_HOME"]).expanduser() if env.get("CODEX_HOME") else home / ".codex"
        return base / "config.toml"
    if name == "claude-code":
        base = (
            Path(env["CLAUDE_CONFIG_DIR"]).expanduser() if env.get("CLAUDE_CONFIG_DIR") else home / ".claude"
        )
        return base / "settings.json"
    if name == "aider":
        return home / ".aider.conf.yml"
    if name == "openhands":
        return None
    raise AgentConfigError(f"unknown agent {name!r}; choose one of {', '.join(AGENTS)}")


# --------------------------------------------------------------------------- environment variables that win


@dataclass(frozen=True)
class EnvOverride:
    """A variable of the agent's environment that wins over what ``configure`` wrote."""

    agent: str
    variable: str
    effect: str

    def message(self) -> str:
        return (
            f"{self.variable} is set in this environment: {AGENTS[self.agent].title} {self.effect}; unset it "
            f"(`unset {self.variable}`, and remove it from your shell profile) so that the agent uses Headway"
        )


#: What each agent reads from its environment ahead of the file Headway writes (observed with the real agents).
#: Claude Code applies settings.json's ``env`` over the shell's, except for
#: ``ANTHROPIC_API_KEY``, which it sends as ``x-api-key`` next to the token; Pi's exported keys win over models.json's
#: ``apiKey`` (its ``baseUrl`` stays); aider reads ``AIDER_*`` variables ahead of its config file. OpenCode and Codex
#: (a token in config.toml) ignore the shell's variables.
_OVERRIDES: dict[str, tuple[tuple[str, str], ...]] = {
    "claude-code": (
        (
            "ANTHROPIC_API_KEY",
            "sends it instead of Headway's key (as x-api-key) and retries its 401s for minutes",
        ),
    ),
    "pi": (
        (
            "ANTHROPIC_API_KEY",
            "sends it to Headway instead of the key in models.json, and Headway refuses it",
        ),
        ("OPENAI_API_KEY", "sends it to Headway instead of the key in models.json, and Headway refuses it"),
    ),
    "aider": (
        ("AIDER_OPENAI_API_KEY", "uses it instead of openai-api-key from .aider.conf.yml"),
        ("AIDER_OPENAI_API_BASE", "uses it instead of openai-api-base from .aider.conf.yml"),
        ("AIDER_ANTHROPIC_API_KEY", "uses it instead of anthropic-api-key from .aider.conf.yml"),
        ("AIDER_SET_ENV", "uses it instead of set-env (ANTHROPIC_BASE_URL) from .aider.conf.yml"),
    ),
}


def env_overrides(
    name: str, key: str | None = None, environ: Mapping[str, str] | None = None
) -> list[EnvOverride]:
    """The variables set in ``environ`` that would make agent ``name`` ignore what ``configure`` wrote.

    A variable holding Headway's own access key ``key`` is harmless (the tray's "Connect an agent" text exports it).
    """
    env = os.environ if environ is None else environ
    return [
        EnvOverride(name, var, effect)
        for var, effect in _OVERRIDES.get(name, ())
        if env.get(var) and not (key and env.get(var) == key)
    ]


# --------------------------------------------------------------------------- what Headway wants in each


def _json_fragment(name: str, ep: Endpoint) -> dict[str, Any]:
    if name == "opencode":
        options = {"baseURL": ep.v1, "apiKey": ep.key}
        return {"provider": {"anthropic": {"options": dict(options)}, "openai": {"options": dict(options)}}}
    if name == "pi":
        return {
            "providers": {
                "anthropic": {"baseUrl": ep.root, "apiKey": ep.key},
                "openai": {"baseUrl": ep.v1, "apiKey": ep.key},
            }
        }
    if name == "claude-code":
        return {"env": {"ANTHROPIC_BASE_URL": ep.root, "ANTHROPIC_AUTH_TOKEN": ep.key}}
    raise AssertionError(name)


def _codex_table(ep: Endpoint) -> dict[str, str | bool]:
    # supports_websockets: the Responses API over one WebSocket per session (Codex CLI 0.16x reads it; without it
    # Codex stays on HTTP). Headway serves both.
    return {
        "name": "Headway",
        "base_url": ep.v1,
        "wire_api": "responses",
        "supports_websockets": True,
        "experimental_bearer_token": ep.key,
    }


def _aider_values(ep: Endpoint) -> dict[str, str]:
    return {"openai-api-base": ep.v1, "openai-api-key": ep.key, "anthropic-api-key": ep.key}


def snippet(name: str, ep: Endpoint) -> str:
    """What to paste, for a user who edits the file (or environment) by hand."""
    if name in ("opencode", "pi", "claude-code"):
        fragment = _json_fragment(name, ep)
        if name == "opencode":
            fragment = {"$schema": "https://opencode.ai/config.json", **fragment}
        return json.dumps(fragment, indent=2) + "\n"
    if name == "codex":
        return _toml_edit("", ep)
    if name == "aider":
        return _aider_block(ep)
    if name == "openhands":
        return (
            "# Claude models through Headway\n"
            "export LLM_MODEL=anthropic/claude-sonnet-4-5\n"
            f"export LLM_BASE_URL={ep.root}\n"
            f"export LLM_API_KEY={ep.key}\n"
            "# or OpenAI / ChatGPT models: LLM_MODEL=openai/gpt-5 and LLM_BASE_URL=" + ep.v1 + "\n"
        )
    raise AgentConfigError(f"unknown agent {name!r}; choose one of {', '.join(AGENTS)}")


# --------------------------------------------------------------------------- planning an edit


@dataclass(frozen=True)
class Plan:
    agent: AgentInfo
    path: Path | None
    old_text: str | None
    new_text: str
    changed: bool
    notes: tuple[str, ...] = ()
    #: Variables of the environment that would win over the file (their messages are among ``notes`` too).
    overrides: tuple[EnvOverride, ...] = ()


@dataclass(frozen=True)
class WriteResult:
    agent: AgentInfo
    path: Path
    backup: Path | None
    changed: bool
    notes: tuple[str, ...] = ()
    overrides: tuple[EnvOverride, ...] = ()


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentConfigError(f"cannot read {path}: {exc}") from exc


def _merge(target: dict[str, Any], fragment: Mapping[str, Any], where: str) -> None:
    for key, value in fragment.items():
        if isinstance(value, Mapping):
            existing = target.get(key)
            if existing is None:
                existing = target[key] = {}
            if not isinstance(existing, dict):
                raise AgentConfigError(f"{where}{key} is not an object; fix it by hand and try again")
            _merge(existing, value, f"{where}{key}.")
        else:
            target[key] = value


def _plan_json(info: AgentInfo, path: Path, old: str | None, ep: Endpoint) -> Plan:
    notes: list[str] = []
    if old is None or not old.strip():
        data: dict[str, Any] = {}
    else:
        try:
            loaded = json.loads(old)
        except json.JSONDecodeError as exc:
            raise AgentConfigError(
                f"{path} is not plain JSON ({exc.msg} at line {exc.lineno}); Headway does not rewrite a file it cannot "
                "read exactly — edit it by hand with `headway configure " + info.name + " --print`"
            ) from exc
        if not isinstance(loaded, dict):
            raise AgentConfigError(f"{path} does not hold a JSON object; fix it by hand and try again")
        data = loaded
    before = json.loads(json.dumps(data))
    if info.name == "opencode":
        data.setdefault("$schema", "https://opencode.ai/config.json")
        if path.with_suffix(".jsonc").exists():
            notes.append(
                f"{path.with_suffix('.jsonc')} also exists; OpenCode merges both, and its values may win"
            )
    _merge(data, _json_fragment(info.name, ep), "")
    if info.name == "claude-code":
        env = data["env"]
        if "ANTHROPIC_API_KEY" in env:
            del env["ANTHROPIC_API_KEY"]
            notes.append("removed env.ANTHROPIC_API_KEY (Claude Code would send it instead of Headway's key)")
    changed = data != before or old is None
    new_text = json.dumps(data, indent=2, ensure_ascii=False) + "\n" if changed else (old or "")
    return Plan(info, path, old, new_text, changed, tuple(notes))


def _toml_edit(text: str, ep: Endpoint) -> str:
    """``text`` with Codex pointed at Headway, edited with tomlkit: every other key, comment and blank line stays
    where it was, in whatever legal form the user wrote it (tables, inline tables, dotted keys)."""
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:  # tomllib accepted it; a tomlkit gap is still refused safely
        raise AgentConfigError(f"cannot edit this TOML ({exc})") from exc
    doc["model_provider"] = PROVIDER_ID
    providers = doc.get("model_providers")
    if providers is None:
        providers = tomlkit.table(is_super_table=True)
        doc["model_providers"] = providers
    if not isinstance(providers, dict):
        raise AgentConfigError("model_providers is not a table; fix it by hand and try again")
    table = providers.get(PROVIDER_ID)
    if table is None:
        # an inline table can only hold inline tables: `model_providers = { other = {...} }` gets one more
        table = (
            tomlkit.inline_table() if isinstance(providers, tomlkit.items.InlineTable) else tomlkit.table()
        )
        providers[PROVIDER_ID] = table
    if not isinstance(table, dict):
        raise AgentConfigError(f"model_providers.{PROVIDER_ID} is not a table; fix it by hand and try again")
    if "env_key" in table:
        del table["env_key"]  # an env_key would win over the token and fail when the variable is unset
    for key, value in _codex_table(ep).items():
        if table.get(key) != value:
            table[key] = value
    text = tomlkit.dumps(doc)
    return text if text.endswith("\n") else text + "\n"  # a key appended after a last line without one


def _plan_toml(info: AgentInfo, path: Path, old: str | None, ep: Endpoint) -> Plan:
    text = old or ""
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AgentConfigError(f"{path} is not valid TOML ({exc}); fix it first") from exc
    try:
        new_text = _toml_edit(text, ep)
        after = tomllib.loads(new_text)
    except (
        AgentConfigError,
        tomllib.TOMLDecodeError,
        ValueError,
    ) as exc:  # ValueError: tomlkit refused the edit
        raise AgentConfigError(
            f"{path} defines model_provider or model_providers.{PROVIDER_ID} in a form Headway does not edit "
            f"({exc}); remove those entries by hand and try again"
        ) from exc
    provider = after.get("model_providers", {}).get(PROVIDER_ID, {})
    expected = _codex_table(ep)
    if after.get("model_provider") != PROVIDER_ID or any(provider.get(k) != v for k, v in expected.items()):
        raise AgentConfigError(f"could not edit {path} safely; add this by hand:\n{snippet(info.name, ep)}")

    # Nothing else may have changed.
    def rest(doc: dict[str, Any]) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(doc, default=str))
        copy.pop("model_provider", None)
        copy.get("model_providers", {}).pop(PROVIDER_ID, None)
        if copy.get("model_providers") == {}:
            copy.pop("model_providers")
        return copy

    if rest(before) != rest(after):
        raise AgentConfigError(
            f"could not edit {path} without touching other settings; add this by hand:\n{snippet(info.name, ep)}"
        )
    changed = old is None or new_text != old
    return Plan(info, path, old, new_text if changed else text, changed)


_AIDER_MARK = "# Headway gateway (written by `headway configure aider`)\n"
_AIDER_KEYS = ("openai-api-base", "openai-api-key", "anthropic-api-key", "set-env")
_ANTHROPIC_BASE_VARS = ("ANTHROPIC_BASE_URL=", "ANTHROPIC_API_BASE=")


def _aider_block(ep: Endpoint, extra_env: list[str] | None = None) -> str:
    lines = [_AIDER_MARK]
    lines += [f"{k}: {json.dumps(v)}\n" for k, v in _aider_values(ep).items()]
    lines.append("set-env:\n")
    for item in [*(extra_env or []), f"ANTHROPIC_BASE_URL={ep.root}"]:
        lines.append(f"  - {json.dumps(item)}\n")
    return "".join(lines)


def _load_yaml(text: str, path: Path) -> dict[str, Any]:
    """The file as data (ruamel.yaml, YAML 1.2, duplicate keys refused): a file Headway cannot read exactly is left
    alone."""
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise AgentConfigError(
            f"{path} is not valid YAML ({' '.join(str(exc).split())}); fix it first, or edit it by hand with "
            "`headway configure aider --print`"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AgentConfigError(f"{path} does not hold a YAML mapping; fix it by hand and try again")
    return data


def _plan_yaml(info: AgentInfo, path: Path, old: str | None, ep: Endpoint) -> Plan:
    """Headway's keys are removed line by line and written again as one marked block at the end, so every other line
    of the file stays byte for byte; the result is parsed back and must say exactly what it said before plus
    Headway's values, or nothing is written."""
    before = _load_yaml(old or "", path)
    set_env = before.get("set-env", [])
    if isinstance(set_env, str):
        set_env = [set_env]
    if not isinstance(set_env, list) or not all(isinstance(item, str) for item in set_env):
        raise AgentConfigError(f"{path}: `set-env` is not a list of VAR=value strings; change it by hand")
    other_env = [item for item in set_env if not item.startswith(_ANTHROPIC_BASE_VARS)]

    lines = (old or "").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    key_re = re.compile(rf"^({'|'.join(re.escape(k) for k in _AIDER_KEYS)})\s*:")
    kept: list[str] = []
    notes: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line == _AIDER_MARK:
            continue
        if key_re.match(line) is None:
            kept.append(line)
            continue
        # the key's own continuation lines (a block list or an indented value) go with it
        while i < len(lines) and lines[i].strip() and (lines[i][0] in " \t" or lines[i].startswith("- ")):
            i += 1
    if any(line.startswith("api-key:") for line in kept):
        notes.append("this file also sets `api-key:`; make sure it does not name anthropic or openai")
    while kept and not kept[-1].strip():
        kept.pop()
    body = "".join(kept)
    new_text = (body + "\n" if body else "") + _aider_block(ep, other_env)

    expected = {key: value for key, value in before.items() if key not in _AIDER_KEYS}
    expected.update(_aider_values(ep))
    expected["set-env"] = [*other_env, f"ANTHROPIC_BASE_URL={ep.root}"]
    try:
        after = _load_yaml(new_text, path)
    except AgentConfigError:
        after = None
    if after != expected:
        raise AgentConfigError(
            f"{path} sets {', '.join(_AIDER_KEYS)} in a form Headway does not edit; add this by hand:\n"
            f"{snippet(info.name, ep)}"
        )
    changed = old is None or new_text != old
    return Plan(info, path, old, new_text if changed else (old or ""), changed, tuple(notes))


def plan(
    name: str, ep: Endpoint, *, environ: Mapping[str, str] | None = None, path: Path | None = None
) -> Plan:
    """What ``configure`` would write for agent ``name`` (the file is only read)."""
    info = AGENTS.get(name)
    if info is None:
        raise AgentConfigError(f"unknown agent {name!r}; choose one of {', '.join(AGENTS)}")
    target = path or config_path(name, environ)
    if target is None:
        return Plan(
            info, None, None, snippet(name, ep), False, ("OpenHands is configured through its environment",)
        )
    old = _read(target)
    if info.file_format == "json":
        planned = _plan_json(info, target, old, ep)
    elif info.file_format == "toml":
        planned = _plan_toml(info, target, old, ep)
    else:
        planned = _plan_yaml(info, target, old, ep)
    overrides = tuple(env_overrides(name, ep.key, environ))
    if not overrides:
        return planned
    return replace(planned, notes=planned.notes + tuple(o.message() for o in overrides), overrides=overrides)


# --------------------------------------------------------------------------- writing


def _backup_path(target: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = target.with_name(f"{target.name}.headway-backup-{stamp}")
    n = 2
    while candidate.exists():
        candidate = target.with_name(f"{target.name}.headway-backup-{stamp}-{n}")
        n += 1
    return candidate


def write(p: Plan) -> WriteResult:
    """Carry out a plan: backup, then an atomic, owner-only write. Nothing happens when nothing changes."""
    if p.path is None:
        raise AgentConfigError(
            f"{p.agent.title} is configured through its environment; Headway prints it instead"
        )
    target = p.path.resolve() if p.path.is_symlink() else p.path
    if not p.changed:
        return WriteResult(p.agent, target, None, False, p.notes, p.overrides)
    if _read(target) != p.old_text:
        raise AgentConfigError(f"{target} changed while Headway was editing it; try again")
    if not target.parent.exists():
        target.parent.mkdir(parents=True, mode=0o700)
    backup = None
    mode = 0o600
    if p.old_text is not None:
        backup = _backup_path(target)
        shutil.copy2(target, backup)
        if os.name == "posix":
            os.chmod(backup, 0o600)
        mode = stat.S_IMODE(target.stat().st_mode) & ~0o077  # it now holds the local access key
    write_private_file(target, p.new_text.encode("utf-8"), mode=mode)
    return WriteResult(p.agent, target, backup, True, p.notes, p.overrides)


def configure(
    name: str, ep: Endpoint, *, environ: Mapping[str, str] | None = None, path: Path | None = None
) -> WriteResult:
    return write(plan(name, ep, environ=environ, path=path))
