"""The settings file and the Headway home: valid, owner-only, writable."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from proxy.config.paths import Paths
from proxy.config.settings import Settings
from proxy.config.store import SettingsStore

from . import Check

__all__ = ["Context", "home_checks", "load_context", "settings_checks"]


@dataclass(frozen=True)
class Context:
    store: SettingsStore
    settings: Settings
    read_error: str | None = None


def load_context(paths: Paths) -> Context:
    """The settings in force for this home (the last good ones when the file has an error). Reads only."""
    factory = getattr(SettingsStore, "for_paths", None)
    store = factory(paths) if callable(factory) else SettingsStore(paths.settings_file)
    try:
        if paths.settings_file.parent.exists():
            store.load()
    except OSError as exc:
        return Context(store, store.current, f"cannot read {paths.settings_file}: {exc.strerror or exc}")
    return Context(store, store.current)


def _loose(mode: int) -> bool:
    return os.name == "posix" and bool(mode & 0o077)


def _owner_problem(info: os.stat_result) -> str | None:
    if os.name == "posix" and info.st_uid != os.getuid():
        return f"owned by uid {info.st_uid}, not by you (uid {os.getuid()})"
    return None


def settings_checks(paths: Paths, context: Context) -> list[Check]:
    path = paths.settings_file
    if context.read_error is not None:
        return [Check("settings file", "fail", context.read_error, "see the headway home check below")]
    if not os.path.lexists(path):
        return [
            Check("settings file", "ok", f"{path} does not exist yet; the first start writes the defaults")
        ]
    error = context.store.error
    if error is not None:
        problems = "; ".join(error.problems[:3]) + (" …" if len(error.problems) > 3 else "")
        return [
            Check(
                "settings file",
                "fail",
                f"{path} is invalid: {problems}",
                "fix the file (`headway settings check` lists every problem); Headway keeps the last good settings "
                "until then",
            )
        ]
    info = path.stat()
    checks = [Check("settings file", "ok", f"{path} is valid ({len(context.settings.accounts)} accounts)")]
    owner = _owner_problem(info)
    if owner or _loose(info.st_mode):
        checks.append(
            Check(
                "settings permissions",
                "warn",
                f"{path} is {owner or f'readable by others (mode {stat.S_IMODE(info.st_mode):o})'}",
                f"chmod 600 {path}" if not owner else f"chown $USER {path}; chmod 600 {path}",
            )
        )
    return checks


def _folders(paths: Paths) -> list[Path]:
    folders = [paths.config_dir, paths.data_dir, paths.log_dir, paths.run_dir]
    return ([paths.home] if paths.home is not None else []) + folders


def home_checks(paths: Paths) -> list[Check]:
    where = paths.home if paths.home is not None else paths.config_dir
    problems: list[str] = []
    fixes: list[str] = []
    loose: list[str] = []
    for folder in _folders(paths):
        try:
            info = folder.stat()
        except FileNotFoundError:
            parent = next((p for p in folder.parents if p.exists()), None)
            if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
                problems.append(f"cannot create {folder}: {parent} is not writable")
                fixes.append(f"set HEADWAY_HOME to a folder you own, or make {parent} writable")
            continue
        except OSError as exc:
            problems.append(f"cannot look at {folder}: {exc.strerror or exc}")
            continue
        if not stat.S_ISDIR(info.st_mode):
            problems.append(f"{folder} is not a folder")
            fixes.append(f"move {folder} away")
            continue
        owner = _owner_problem(info)
        if owner:
            problems.append(f"{folder} is {owner}")
            fixes.append(f"sudo chown -R $USER {folder}")
        elif not os.access(folder, os.W_OK | os.X_OK):
            problems.append(f"{folder} is not writable")
            fixes.append(f"chmod 700 {folder}")
        elif _loose(info.st_mode):
            loose.append(str(folder))
    if problems:
        return [Check("headway home", "fail", "; ".join(problems), "; ".join(dict.fromkeys(fixes)))]
    if loose:
        return [
            Check(
                "headway home",
                "warn",
                f"readable by other users: {', '.join(loose)}",
                f"chmod 700 {' '.join(loose)} (Headway tightens them at its next start)",
            )
        ]
    return [Check("headway home", "ok", f"{where}: yours, owner-only")]
