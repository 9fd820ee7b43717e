"""The one path through which settings are read and written.

Every writer — the CLI, the tray, the settings page — calls :meth:`SettingsStore.update` with a function that edits
a copy; the store validates the result and writes it atomically under a file lock. Hand edits arrive through the
watcher as :meth:`SettingsStore.reload`. A file that cannot be used never replaces the last good settings: the store
keeps them, records the error, and says exactly what is wrong.

"Cannot be used" includes a file that is missing, empty, unreadable, too large, or a folder — once a settings file
has existed in this home. The mark of that is the *last-good copy* (``data/settings.last-good.json`` for a store
built with :meth:`SettingsStore.for_paths`): every settings file that loads or is written fine is copied there. So

- only a true first run (no settings file and no last-good copy) starts from the defaults;
- an editor's truncate-then-write, ``: > settings.json`` or ``rm settings.json`` is an error, never "no accounts";
- a process that starts while the file is unusable runs on the last-good copy and reports the error;
- no write replaces a file the store could not read (:meth:`update` raises SettingsError saying why);
- recovery: copy the last-good file back (or fix the file); deleting the last-good copy knowingly makes the next
  start a first run.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from filelock import Timeout

from proxy.config.paths import (
    Paths,
    ensure_private_dir,
    private_file_lock,
    remove_stale_temp_files,
    write_private_file,
)
from proxy.config.settings import Settings, SettingsError, parse_settings

__all__ = ["MAX_SETTINGS_BYTES", "SettingsStore"]

log = logging.getLogger("headway.settings")

Listener = Callable[[Settings], None]

MAX_SETTINGS_BYTES = 1024 * 1024


class SettingsStore:
    def __init__(
        self, path: Path, *, last_good: Path | None = None, max_bytes: int = MAX_SETTINGS_BYTES
    ) -> None:
        self.path = path
        self.last_good = last_good if last_good is not None else path.with_name(path.name + ".last-good")
        self.max_bytes = max_bytes
        self._lock = private_file_lock(path.with_name(path.name + ".lock"), timeout=10)
        self._mutex = threading.Lock()
        self._current = Settings()
        self._error: SettingsError | None = None
        self._listeners: list[Listener] = []
        self._last_good_text: str | None = None  # what the last-good copy holds, once known
        self._seen = False  # this store read or wrote a good file (even if the copy could not be kept)

    @classmethod
    def for_paths(cls, paths: Paths) -> SettingsStore:
        """The store of a Headway home: its settings file, with the last-good copy in the data folder."""
        return cls(paths.settings_file, last_good=paths.settings_last_good)

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

    # ----------------------------------------------------------------- reading

    def _problem(self, message: str) -> SettingsError:
        return SettingsError(str(self.path), [message])

    def _existed(self) -> bool:
        return self._seen or self._last_good_text is not None or os.path.lexists(self.last_good)

    def _recovery(self) -> str:
        return (
            f"the last good settings are kept in {self.last_good}: `headway settings restore` puts them back (it moves "
            f"this file aside), or copy that file to {self.path} yourself "
            f"(or delete {self.last_good} knowingly to start over with no accounts)"
        )

    def _unreadable(self, reason: str) -> SettingsError:
        """A file that cannot be read: once one existed here, the last-good copy is the way back."""
        if self._existed():
            reason += "; " + self._recovery()
        return self._problem(reason)

    def _read(self) -> tuple[Settings, str | None]:
        """The file's settings and text; (defaults, None) on a true first run. Raises SettingsError otherwise."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return self._missing()
        except OSError as exc:
            raise self._unreadable(f"cannot read the file: {exc.strerror or exc}") from exc
        if stat.S_ISDIR(info.st_mode):
            raise self._problem(
                "is a folder, not a file; " + (self._recovery() if self._existed() else "move it away")
            )
        if not stat.S_ISREG(info.st_mode):
            raise self._problem("is not a regular file")
        if info.st_size > self.max_bytes:
            raise self._problem(self._too_large(info.st_size))
        try:
            # Non-blocking, and checked again on the open file: a FIFO swapped in since the stat must not hang us.
            with open(self.path, "rb", opener=_open_nonblocking) as fh:
                opened = os.fstat(fh.fileno())
                if not stat.S_ISREG(opened.st_mode):
                    raise self._problem("is not a regular file")
                data = fh.read(self.max_bytes + 1)
        except FileNotFoundError:
            return self._missing()
        except OSError as exc:
            raise self._unreadable(f"cannot read the file: {exc.strerror or exc}") from exc
        if len(data) > self.max_bytes:
            raise self._problem(self._too_large(len(data)))
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise self._unreadable(f"is not UTF-8 text (byte {exc.start}); settings files are JSON") from exc
        if not text.strip():
            if self._existed():
                raise self._problem(
                    "the file is empty (a save in progress, or truncated); " + self._recovery()
                )
            return Settings(), None
        return parse_settings(text, str(self.path)), text

    def _missing(self) -> tuple[Settings, str | None]:
        if self._existed():
            raise self._problem("the file is missing; " + self._recovery())
        return Settings(), None

    def _too_large(self, size: int) -> str:
        return (
            f"the file is {size / (1024 * 1024):.1f} MiB; settings files are at most "
            f"{self.max_bytes // 1024} KiB — is this the right file?"
        )

    def _remember_good(self, text: str) -> None:
        """Keep a copy of a settings file that loaded or was written fine (and so mark that one existed)."""
        self._seen = True
        if text == self._last_good_text:
            return
        try:
            if self._last_good_text is None and self.last_good.is_file():
                with open(self.last_good, "rb") as fh:
                    if fh.read(self.max_bytes + 1).decode("utf-8", "replace") == text:
                        self._last_good_text = text
                        return
            ensure_private_dir(self.last_good.parent)
            write_private_file(self.last_good, text.encode())
            self._last_good_text = text
        except OSError as exc:
            log.warning("cannot keep a copy of the settings in %s: %s", self.last_good, exc)

    def _read_last_good(self) -> Settings | None:
        try:
            info = os.stat(self.last_good)
            if info.st_size > self.max_bytes or not stat.S_ISREG(info.st_mode):
                return None
            with open(self.last_good, "rb") as fh:
                return parse_settings(fh.read().decode("utf-8-sig"), str(self.last_good))
        except (OSError, UnicodeDecodeError, SettingsError) as exc:
            log.warning("the last-good settings copy %s cannot be used either: %s", self.last_good, exc)
            return None

    # ----------------------------------------------------------------- loading

    def load(self, *, create: bool = False) -> Settings:
        """Read the file. With ``create``, write the defaults if this is a true first run (no file ever existed).

        When the file cannot be used at the first load, the last-good copy is put in force (the defaults if there is
        none) and the error is recorded, as for any reload.
        """
        if create or not self._existed():
            ensure_private_dir(self.path.parent)
        remove_stale_temp_files(self.path)
        remove_stale_temp_files(self.last_good)
        if create and not os.path.lexists(self.path) and not self._existed():
            with self._lock:
                if not os.path.lexists(self.path) and not self._existed():
                    text = Settings().to_json()
                    write_private_file(self.path, text.encode())
                    self._remember_good(text)
        self.reload()
        if self.error is not None and self.current == Settings():
            fallback = self._read_last_good()
            if fallback is not None and fallback != Settings():
                log.info(
                    "running on the last good settings from %s until %s is fixed", self.last_good, self.path
                )
                self._swap(fallback, keep_error=True)
        return self.current

    def reload(self) -> bool:
        """Re-read the file; apply it if valid. Returns True when the settings in force changed.

        Under the file lock, so a reload cannot put older settings in force between a writer's write and swap.
        A config folder that is gone is not made again here (taking the lock would): a restore of the whole
        folder must find its place free.
        """
        if not self.path.parent.is_dir():
            return self._reload_locked()
        try:
            with self._lock:
                return self._reload_locked()
        except Timeout:
            log.warning("settings file is locked by another writer; will reload on its change")
            return False
        except OSError as exc:  # the lock file itself: folder gone or not ours
            self._record(self._problem(f"cannot lock the file ({exc.strerror or exc})"))
            return False

    def _reload_locked(self) -> bool:
        try:
            new, text = self._read()
        except SettingsError as exc:
            self._record(exc)
            return False
        if text is not None:
            self._remember_good(text)
        return self._swap(new)

    def _record(self, exc: SettingsError) -> None:
        with self._mutex:
            changed = self._error is None or self._error.problems != exc.problems
            self._error = exc
        if changed:
            log.error("the settings file cannot be used; keeping the last good settings:\n%s", exc)

    def _swap(self, new: Settings, *, keep_error: bool = False) -> bool:
        with self._mutex:
            had_error = self._error is not None
            if not keep_error:
                self._error = None
            if new == self._current:
                return False
            self._current = new
        if had_error and not keep_error:
            log.info("settings file is valid again")
        for listener in list(self._listeners):
            try:
                listener(new)
            except Exception:
                log.exception("settings listener failed")
        return True

    # ----------------------------------------------------------------- writing

    def update(self, edit: Callable[[Settings], Settings | None]) -> Settings:
        """Apply ``edit`` to a copy of the file's settings, validate, and write atomically.

        ``edit`` may change the copy in place or return a new Settings. Raises SettingsError if the file on disk
        cannot be used — invalid, missing after it existed, empty, unreadable, too large (fix it first: we never
        overwrite a file we could not read) — or if the result is invalid.
        """
        if not self.path.parent.is_dir() and self._existed():
            try:
                self._missing()
            except SettingsError as exc:
                self._record(exc)
                raise
        ensure_private_dir(self.path.parent)
        with self._lock:
            try:
                base, _ = self._read()
            except SettingsError as exc:
                self._record(exc)
                raise
            draft = base.model_copy(deep=True)
            result = edit(draft)
            candidate = result if result is not None else draft
            # Lists edited in place are not validated on assignment: validate the whole thing again.
            new = parse_settings(candidate.to_json(), str(self.path))
            text = new.to_json()
            write_private_file(self._write_target(), text.encode())
            self._remember_good(text)
            # Swap under the file lock: a writer preempted here must not put its older settings in force (and
            # tell listeners so) after a later writer's.
            self._swap(new)
        return new

    def restore_last_good(self) -> Path | None:
        """Put the last-good copy back in place of an unusable settings file (for a `settings restore` command).

        Whatever is in the way — a broken file, a folder — is moved aside, never deleted; returns where it went (None
        when nothing was there). Raises SettingsError when the file is fine (nothing to restore) or there is no copy.
        """
        ensure_private_dir(self.path.parent)
        with self._lock:
            try:
                self._read()
            except SettingsError:
                pass
            else:
                raise self._problem("the file is fine; nothing to restore")
            good = self._read_last_good()
            if good is None:
                raise self._problem(f"there is no usable last-good copy at {self.last_good}")
            text = self.last_good.read_text(encoding="utf-8-sig")
            aside = None
            if os.path.lexists(self.path):
                aside = self.path.with_name(f"{self.path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
                os.replace(self.path, aside)
            write_private_file(self.path, text.encode())
            self._remember_good(text)
            self._swap(good)
        return aside

    def _write_target(self) -> Path:
        """Where the new file goes: through a symlink (a dotfiles checkout) to the file it points at."""
        if self.path.is_symlink():
            return Path(os.path.realpath(self.path))
        return self.path


def _open_nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
