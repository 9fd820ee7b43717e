"""Watch the settings file and hand changes to a callback, debounced.

The observer runs on watchdog's own thread; the callback is invoked from a timer thread, so it must hand work to
its owner with a thread-safe call (the engine uses ``loop.call_soon_threadsafe``).

The folder above the config folder is watched too: when the config folder is deleted and made again (a restore from
a backup, ``rm -rf`` then a copy), the watch on it is re-armed and a reload follows, instead of going deaf.

A settings file that is a symbolic link (a dotfiles checkout: stow, chezmoi, a hand-made ``ln -s``) is followed: the
folder of the file it points at is watched as well, so an edit there, or ``headway dumps on`` writing through the
link, applies at once. The link is looked at again before each reload, so a link pointed elsewhere is followed to
its new file.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Collection
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

__all__ = ["SettingsWatcher"]

log = logging.getLogger("headway.settings")


class _Handler(FileSystemEventHandler):
    """Events on the settings file: under its own name, or under the name of the file its link points at."""

    def __init__(self, files: Callable[[], Collection[str]], poke: Callable[[], None]) -> None:
        self._files = files
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = {str(event.src_path), str(getattr(event, "dest_path", "") or "")}
        if not paths.isdisjoint(self._files()):
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
        #: the settings file's path, and the file its link points at (the same when it is no link)
        self._files: frozenset[str] = frozenset({str(path)})
        #: the watch on the folder of the file the link points at, when no other watch covers that folder
        self._link_watch: ObservedWatch | None = None
        #: on the config folder's watch and on the link's: events on either name of the settings file
        self._handler = _Handler(lambda: self._files, self._poke)

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
        self._follow_link()
        try:
            self._on_change()
        except Exception:
            log.exception("settings reload failed")

    def start(self) -> None:
        observer = Observer()
        observer.name = "headway-settings-watch"
        observer.daemon = True
        self._watch = observer.schedule(self._handler, str(self._path.parent), recursive=False)
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
        self._follow_link()

    def _follow_link(self) -> None:
        """Watch the folder of the file the settings file's link points at (and no longer the one it pointed at).

        Called at start and before each reload, never on the observer's thread (``schedule`` takes the lock watchdog
        dispatches events under)."""
        real = os.path.realpath(self._path)
        with self._rearm_lock:
            observer = self._observer
            if observer is None:
                return
            self._files = frozenset({str(self._path), real})
            folder = os.path.dirname(real)
            if real == str(self._path) or folder == os.path.realpath(self._path.parent):
                folder = ""  # no link, or one inside the watched config folder: its watch sees the file
            current = self._link_watch.path if self._link_watch is not None else ""
            if folder == current:
                return
            if self._link_watch is not None:
                self._unwatch_link(observer, self._link_watch)
                self._link_watch = None
            if folder:
                try:
                    self._link_watch = observer.schedule(self._handler, folder, recursive=False)
                except OSError as exc:  # a dangling link: the config folder's watch notices when it is mended
                    log.warning("cannot watch %s, where the settings file's link points: %s", folder, exc)

    def _unwatch_link(self, observer: BaseObserver, watch: ObservedWatch) -> None:
        if watch.path == str(self._path.parent.parent):
            # the folder above the config folder has a watch of its own (re-arming): take only this handler off it
            observer.remove_handler_for_watch(self._handler, watch)
            return
        try:
            observer.unschedule(watch)
        except (KeyError, OSError):
            pass  # its folder is gone, and the watch with it

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
                self._watch = observer.schedule(self._handler, str(self._path.parent), recursive=False)
            except OSError as exc:
                log.warning("cannot watch %s again: %s", self._path.parent, exc)
                return
        self._poke()

    def stop(self, timeout: float = 2.0) -> None:
        with self._rearm_lock:
            observer, self._observer = self._observer, None
            self._link_watch = None
        with self._mutex:
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()
        if observer is not None:
            observer.stop()
            observer.join(timeout)
            if observer.is_alive():
                log.warning("settings watcher did not stop within %.1fs", timeout)
