"""Watch the settings file and hand changes to a callback, debounced.

The observer runs on watchdog's own thread; the callback is invoked from a timer thread, so it must hand work to
its owner with a thread-safe call (the engine uses ``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

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


class SettingsWatcher:
    def __init__(self, path: Path, on_change: Callable[[], object], debounce: float = 0.05) -> None:
        self._path = path
        self._on_change = on_change
        self._debounce = debounce
        self._timer: threading.Timer | None = None
        self._mutex = threading.Lock()
        self._observer: Observer | None = None  # type: ignore[valid-type]

    def _poke(self) -> None:
        with self._mutex:
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
        observer.schedule(_Handler(self._path, self._poke), str(self._path.parent), recursive=False)
        observer.start()
        self._observer = observer

    def stop(self, timeout: float = 2.0) -> None:
        with self._mutex:
            if self._timer is not None:
                self._timer.cancel()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            if self._observer.is_alive():
                log.warning("settings watcher did not stop within %.1fs", timeout)
            self._observer = None
