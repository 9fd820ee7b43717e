"""Watch the settings file and hand changes to a callback, debounced.

The observer runs on watchdog's own thread; the callback is invoked from a timer thread, so it must hand work to
its owner with a thread-safe call (the engine uses ``loop.call_soon_threadsafe``).

The folder above the config folder is watched too: when the config folder is deleted and made again (a restore from
a backup, ``rm -rf`` then a copy), the watch on it is re-armed and a reload follows, instead of going deaf.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

__all__ = ["SettingsWatcher"]

log = logging.getLogger("headway.settings")


class _Handler(FileSystemEventHandler):
    def __init__(self, target: Path, poke: Callable[[], None]) -> None:
        self._target = str(target)
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = {str(event.src_path), str(getattr(event, "dest_path", "") or "")}
        if self._target in paths:
            self._poke()


class _FolderHandler(FileSystemEventHandler):
    """Events in the config folder's parent: re-arm when the config folder itself appears (again)."""

    def __init__(self, folder: Path, rearm: Callable[[], None]) -> None:
        self._folder = str(folder)
        self._rearm = rearm

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = {str(event.src_path), str(getattr(event, "dest_path", "") or "")}
        if self._folder in paths and event.event_type in ("created", "moved"):
            self._rearm()


class SettingsWatcher:
    def __init__(self, path: Path, on_change: Callable[[], object], debounce: float = 0.05) -> None:
        self._path = path
        self._on_change = on_change
        self._debounce = debounce
        self._timer: threading.Timer | None = None
        self._mutex = threading.Lock()
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._watch: ObservedWatch | None = None
        self._rearm_lock = threading.Lock()
        self._stopped = False

    def _poke(self) -> None:
        with self._mutex:
            if self._stopped:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self._debounce, self._fire)
            self._timer.name = "headway-settings-debounce"
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        try:
            self._on_change()
        except Exception:
            log.exception("settings reload failed")

    def start(self) -> None:
        observer = Observer()
        observer.name = "headway-settings-watch"
        observer.daemon = True
        self._watch = observer.schedule(
            _Handler(self._path, self._poke), str(self._path.parent), recursive=False
        )
        parent = self._path.parent.parent
        if parent != self._path.parent and parent.is_dir():
            observer.schedule(
                _FolderHandler(self._path.parent, self._rearm_soon), str(parent), recursive=False
            )
        observer.start()
        with self._rearm_lock:
            self._observer = observer
        with self._mutex:
            self._stopped = False

    def _rearm_soon(self) -> None:
        # Off the observer thread: watchdog dispatches events under its own lock, which schedule() takes too.
        timer = threading.Timer(self._debounce, self._rearm)
        timer.name = "headway-settings-rearm"
        timer.daemon = True
        timer.start()

    def _rearm(self) -> None:
        """The config folder was made again: watch the new one, then reload whatever it holds by now."""
        with self._rearm_lock:
            observer = self._observer
            if observer is None:
                return
            try:
                observer.unschedule(self._watch)
            except (KeyError, OSError):
                pass  # the old watch ended with its folder
            try:
                self._watch = observer.schedule(
                    _Handler(self._path, self._poke), str(self._path.parent), recursive=False
                )
            except OSError as exc:
                log.warning("cannot watch %s again: %s", self._path.parent, exc)
                return
        self._poke()

    def stop(self, timeout: float = 2.0) -> None:
        with self._rearm_lock:
            observer, self._observer = self._observer, None
        with self._mutex:
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()
        if observer is not None:
            observer.stop()
            observer.join(timeout)
            if observer.is_alive():
                log.warning("settings watcher did not stop within %.1fs", timeout)
