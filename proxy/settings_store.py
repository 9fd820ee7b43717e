"""The one path through which settings are read and written.

Every writer — the CLI, the tray, the settings page — calls :meth:`SettingsStore.update` with a function that edits
a copy; the store validates the result and writes it atomically under a file lock. Hand edits arrive through the
watcher as :meth:`SettingsStore.reload`. An invalid file never replaces the last good settings: the store keeps them,
records the error, and says exactly what is wrong.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from .paths import ensure_private_dir, write_private_file
from .settings import Settings, SettingsError, parse_settings

__all__ = ["SettingsStore"]

log = logging.getLogger("headway.settings")

Listener = Callable[[Settings], None]


class SettingsStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = FileLock(str(path.with_name(path.name + ".lock")), timeout=10)
        self._mutex = threading.Lock()
        self._current = Settings()
        self._error: SettingsError | None = None
        self._listeners: list[Listener] = []

    @property
    def current(self) -> Settings:
        """The settings in force: the last good ones."""
        with self._mutex:
            return self._current

    @property
    def error(self) -> SettingsError | None:
        """Why the file on disk is not in force, if it is not."""
        with self._mutex:
            return self._error

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _read(self) -> Settings:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Settings()
        return parse_settings(text, str(self.path))

    def load(self, *, create: bool = False) -> Settings:
        """Read the file. With ``create``, write the defaults if there is no file yet.

        Raises SettingsError when the file is invalid and there are no good settings to fall back on is not a
        concern here: at first load the defaults are the last good settings, and the error is recorded.
        """
        ensure_private_dir(self.path.parent)
        if create and not self.path.exists():
            with self._lock:
                if not self.path.exists():
                    write_private_file(self.path, Settings().to_json().encode())
        self.reload()
        return self.current

    def reload(self) -> bool:
        """Re-read the file; apply it if valid. Returns True when the settings in force changed.

        Under the file lock, so a reload cannot put older settings in force between a writer's write and swap.
        """
        try:
            with self._lock:
                return self._reload_locked()
        except Timeout:
            log.warning("settings file is locked by another writer; will reload on its change")
            return False

    def _reload_locked(self) -> bool:
        try:
            new = self._read()
        except SettingsError as exc:
            with self._mutex:
                changed = self._error is None or self._error.problems != exc.problems
                self._error = exc
            if changed:
                log.error("settings file is invalid; keeping the last good settings:\n%s", exc)
            return False
        except OSError as exc:
            log.error("cannot read %s: %s; keeping the last good settings", self.path, exc)
            return False
        return self._swap(new)

    def _swap(self, new: Settings) -> bool:
        with self._mutex:
            had_error = self._error is not None
            self._error = None
            if new == self._current:
                return False
            self._current = new
        if had_error:
            log.info("settings file is valid again")
        for listener in list(self._listeners):
            try:
                listener(new)
            except Exception:
                log.exception("settings listener failed")
        return True

    def update(self, edit: Callable[[Settings], Settings | None]) -> Settings:
        """Apply ``edit`` to a copy of the file's settings, validate, and write atomically.

        ``edit`` may change the copy in place or return a new Settings. Raises SettingsError if the file on disk is
        invalid (fix it first: we never overwrite a user's broken edit) or if the result is invalid.
        """
        ensure_private_dir(self.path.parent)
        with self._lock:
            base = self._read()
            draft = base.model_copy(deep=True)
            result = edit(draft)
            candidate = result if result is not None else draft
            # Lists edited in place are not validated on assignment: validate the whole thing again.
            new = parse_settings(candidate.to_json(), str(self.path))
            write_private_file(self.path, new.to_json().encode())
            # Swap under the file lock: a writer preempted here must not put its older settings in force (and
            # tell listeners so) after a later writer's.
            self._swap(new)
        return new
