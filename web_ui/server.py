"""The settings page's server: waitress on 127.0.0.1 (a free port by default), on a thread of its own.

    server = SettingsServer(context)          # context: web_ui.app.WebContext
    server.start()                            # binds, serves on thread `headway-web`, writes run_dir/web.json
    server.login_url()                        # a one-time sign-in URL (the tray opens it)
    server.stop(timeout)                      # bounded: stop accepting, close connections, join

``run_dir/web.json`` (0600) tells other processes where the page is — its URL and pid, never a token. The
``headway settings`` command reads it and signs the browser in with :func:`cli_login_url`, which drops a one-time
token's digest into the owner-only ``run_dir/web-login/`` folder (see ``security.py``).

waitress has no public stop: the listening socket and every connection are closed on waitress's own loop thread
(through its trigger), the loop then ends by itself, and the worker threads are shut down with a timeout.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import webbrowser
from pathlib import Path
from typing import Any

from waitress import wasyncore
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from proxy.paths import Paths, write_private_file

from .app import WebContext, create_app
from .security import LoginTokens, Sessions, mint_token_file

__all__ = ["SettingsServer", "cli_login_url", "login_dir", "read_web_info", "web_file"]

log = logging.getLogger("headway.web")

THREAD_NAME = "headway-web"


def web_file(paths: Paths) -> Path:
    return paths.run_dir / "web.json"


def login_dir(paths: Paths) -> Path:
    return paths.run_dir / "web-login"


def read_web_info(paths: Paths) -> dict[str, Any] | None:
    """The running page's URL and pid, if a Headway with a settings page is running."""
    try:
        data = json.loads(web_file(paths).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return None
    try:
        os.kill(int(data["pid"]), 0)
    except (KeyError, ValueError, TypeError, ProcessLookupError):
        return None
    except PermissionError:
        pass
    return data


def cli_login_url(paths: Paths) -> str | None:
    """A one-time sign-in URL for the running page (None when no page is running); valid once, for 60 s."""
    info = read_web_info(paths)
    if info is None:
        return None
    token = mint_token_file(login_dir(paths))
    return f"{info['url']}/login?token={token}"


class SettingsServer:
    def __init__(self, context: WebContext, *, host: str = "127.0.0.1", port: int = 0, threads: int = 6) -> None:
        self.context = context
        self.host = host
        self.requested_port = port
        self.threads = threads
        self.tokens = LoginTokens(login_dir(context.paths))
        self.sessions = Sessions()
        self._server: BaseWSGIServer | MultiSocketServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("the settings page is not running")
        return f"http://{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the settings page was already started")
        sock = socket.create_server((self.host, self.requested_port), backlog=64)
        self._port = int(sock.getsockname()[1])
        try:
            self.tokens.prepare()
            app = create_app(
                self.context, tokens=self.tokens, sessions=self.sessions, cookie_name=f"headway_session_{self._port}"
            )
            server = create_server(
                app,
                sockets=[sock],
                threads=self.threads,
                ident="Headway",
                channel_timeout=60,
                connection_limit=64,
                clear_untrusted_proxy_headers=True,
            )
        except BaseException:
            sock.close()
            self._port = 0
            raise
        self._server = server
        self._thread = threading.Thread(target=server.run, name=THREAD_NAME, daemon=True)
        self._thread.start()
        self._write_info()
        log.info("settings page on %s", self.url)

    def _write_info(self) -> None:
        paths = self.context.paths
        paths.run_dir.mkdir(parents=True, exist_ok=True)
        info = {"pid": os.getpid(), "url": self.url, "started_at": time.time()}
        write_private_file(web_file(paths), json.dumps(info).encode())

    def login_url(self) -> str:
        """A one-time URL that signs a browser in (valid once, for 60 s)."""
        return f"{self.url}/login?token={self.tokens.mint()}"

    def open_browser(self) -> bool:
        """Open the page, signed in, in the user's browser. Never raises."""
        try:
            return webbrowser.open(self.login_url())
        except (webbrowser.Error, RuntimeError, OSError) as exc:
            log.warning("cannot open the browser: %s", exc)
            return False

    def stop(self, timeout: float = 3.0) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        deadline = time.monotonic() + timeout
        if self.context.logins is not None:
            self.context.logins.stop(timeout=min(2.0, timeout))
        for helper in list(self.context.caches.values()):  # the relay setups' and the analyses' threads
            stop = getattr(helper, "stop", None)
            if callable(stop):
                stop(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
        socket_map: dict[int, Any] = getattr(server, "_map", None) or getattr(server, "map", {})

        def close_everything() -> None:
            wasyncore.close_all(socket_map, ignore_all=True)

        if thread.is_alive():
            trigger = getattr(server, "trigger", None)
            if trigger is not None:
                trigger.pull_trigger(close_everything)
            thread.join(max(0.1, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("the settings page's server did not stop within %.1fs", timeout)
        else:
            close_everything()
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=max(0.1, deadline - time.monotonic()))
        self._remove_info()
        self._server = None
        self._thread = None

    def _remove_info(self) -> None:
        path = web_file(self.context.paths)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("pid") == os.getpid() and data.get("url") == self.url:
            path.unlink(missing_ok=True)
