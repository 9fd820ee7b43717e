"""The composition root: builds every service in one place and runs them.

``headway serve`` runs headless (the main thread waits on a stop event); ``headway`` with no arguments runs the
tray on the main thread when there is a display. Nothing here runs at import time.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from proxy.config.paths import Paths, private_file_lock
from proxy.config.settings import Settings
from proxy.config.store import SettingsStore
from proxy.logs import LogHandle, configure_logging
from proxy.secrets.keychain import Keychain

if TYPE_CHECKING:  # the heavy parts are imported when the services are built, not by every CLI command
    from proxy.config.watcher import SettingsWatcher
    from proxy.engine import Engine, EngineOptions
    from web_ui.server import SettingsServer

__all__ = [
    "WEB_PORT_ENV",
    "AlreadyRunning",
    "Services",
    "build_services",
    "make_keychain",
    "read_runtime",
    "run_headless",
    "web_port_override",
]

log = logging.getLogger("headway")
SETTLE_AFTER = 1.0  # seconds from listening to the one collection of what starting left (tray/memory.py)

WEB_PORT_ENV = "HEADWAY_WEB_PORT"


def web_port_override(environ: Mapping[str, str]) -> int | None:
    """The settings page's port for this process from ``HEADWAY_WEB_PORT``, instead of ``web.port`` (0: any free
    port). The test suite sets 0, so no test ever touches a developer's running Headway or races another run."""
    raw = environ.get(WEB_PORT_ENV, "").strip()
    if not raw:
        return None
    port = int(raw) if raw.isdigit() else -1
    if not 0 <= port <= 65535:
        log.warning("%s=%r is not a port (0-65535); the settings page uses web.port", WEB_PORT_ENV, raw)
        return None
    return port


class AlreadyRunning(Exception):
    def __init__(self, runtime: dict[str, Any] | None) -> None:
        self.runtime = runtime
        where = f" at {runtime.get('url')} (pid {runtime.get('pid')})" if runtime else ""
        super().__init__(f"Headway is already running{where}")


def make_keychain(paths: Paths, settings: Settings) -> Keychain:
    return Keychain(paths.keychain_service, backend=settings.secrets.backend, file_path=paths.secrets_file)


def read_runtime(paths: Paths) -> dict[str, Any] | None:
    """The running instance's pid and address, if one is running."""
    try:
        data = json.loads(paths.runtime_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        os.kill(int(data["pid"]), 0)
    except (KeyError, ValueError, ProcessLookupError):
        return None
    except PermissionError:
        pass
    return data


@dataclass
class Services:
    paths: Paths
    store: SettingsStore
    keychain: Keychain
    logs: LogHandle
    engine: Engine
    watcher: SettingsWatcher
    lock: FileLock
    web: SettingsServer | None = None
    _settling: threading.Timer | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        self.watcher.start()
        # A taken address is PortInUse, any other bind failure CannotBind: both carry it, and tray.failures says
        # what to do; every other error of the start (a file, the certificates, the keychain) is reported as itself.
        self.engine.start()
        if self.web is not None:
            try:
                self.web.start()
            except OSError as exc:  # the gateway matters more than its settings page
                log.error("the settings page could not start: %s", exc)
        # Everything alive now lives as long as the process: a second from now (not in the first requests' way)
        # it is collected once and frozen out of the collector's full passes, which would otherwise stall the
        # gateway's loop 12-20 ms each; a process that held the collector off while starting turns it on then.
        from .memory import settle

        self._settling = threading.Timer(SETTLE_AFTER, settle)
        self._settling.daemon = True
        self._settling.start()

    def open_settings(self) -> bool:
        """Open the settings page, signed in with a one-time link, in the user's browser."""
        return self.web is not None and self.web.running and self.web.open_browser()

    def stop(self, timeout: float = 5.0) -> None:
        if self._settling is not None:
            self._settling.cancel()
        if self.web is not None:
            self.web.stop(timeout=3.0)
        self.watcher.stop(timeout=2.0)
        self.engine.stop(timeout=timeout)
        self.logs.close()
        self.lock.release()


def build_services(paths: Paths, options: EngineOptions | None = None) -> Services:
    from proxy.config.watcher import SettingsWatcher
    from proxy.engine import Engine
    from web_ui.context import WebContext
    from web_ui.logins import LoginFlows, callback_server
    from web_ui.server import SettingsServer

    paths.ensure()
    lock = private_file_lock(paths.lock_file, timeout=0)
    try:
        lock.acquire()
    except Timeout as exc:
        raise AlreadyRunning(read_runtime(paths)) from exc
    try:
        store = SettingsStore.for_paths(paths)
        store.load(create=True)
        if store.error is not None and store.current == Settings():
            # No good settings to run on (the file is broken and there is no last-good copy): starting on the
            # defaults would serve no account and might pick another secrets backend. Say what is wrong instead.
            raise store.error
        logs = configure_logging(paths.log_dir, store.current.logging.level)
        if store.error is not None:
            log.error("running on the last good settings until the file is fixed:\n%s", store.error)
        keychain = make_keychain(paths, store.current)
        engine = Engine(paths, store, keychain, options, on_log_level=logs.set_level)
        watcher = SettingsWatcher(paths.settings_file, store.reload)
        environ = (options.environ if options else None) or os.environ
        web = SettingsServer(
            WebContext(
                paths,
                store,
                keychain,
                engine,
                log_file=logs.log_file,
                logins=LoginFlows(store, keychain, callback_server, environ),
                health_checks=partial(_health_checks, paths, environ),
            ),
            port=web_port_override(environ),
        )
    except BaseException:
        lock.release()
        raise
    return Services(
        paths=paths,
        store=store,
        keychain=keychain,
        logs=logs,
        engine=engine,
        watcher=watcher,
        lock=lock,
        web=web,
    )


def _health_checks(paths: Paths, environ: Mapping[str, str]) -> list[dict[str, str]]:
    """``headway doctor``'s checks for the settings page (web_ui/ does not import tray/)."""
    from .doctor import run_checks

    return [check.as_dict() for check in run_checks(paths, environ=environ)]


def run_headless(services: Services, *, announce: bool = True) -> None:
    """Start everything and block until SIGINT / SIGTERM; then stop within bounded time."""
    from proxy.engine import StartCancelled

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        services.engine.cancel_start()  # a start still waiting for the keychain ends now

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            services.start()
        except StartCancelled:
            return
        if announce:
            print(f"Headway gateway on {services.engine.base_url}", flush=True)
            print(f"Settings: {services.paths.settings_file}", flush=True)
            if services.web is not None and services.web.running:
                print(
                    f"Settings page: {services.web.url} (open it signed in with `headway settings`)",
                    flush=True,
                )
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        services.stop()
