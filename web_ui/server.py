"""The settings page's server: waitress on 127.0.0.1, on a thread of its own.

    server = SettingsServer(context)          # context: web_ui.app.WebContext
    server.start()                            # binds, serves on thread `headway-web`, writes run_dir/web.json

The page keeps its address across restarts — the port is the setting ``web.port`` (7338 unless changed) — so an open
tab finds it again and it can be bookmarked. When that port is taken (or refused), the page takes a free port for
this run, logs a warning, says so at the top of the page and in ``web.json`` (``wanted_port``).
    server.login_url()                        # a one-time sign-in URL (the tray opens it)
    server.stop(timeout)                      # bounded: stop accepting, close connections, join

``run_dir/web.json`` (0600) tells other processes where the page is — its URL and pid, never a token. The
``headway settings`` command reads it and signs the browser in with :func:`cli_login_url`, which drops a one-time
token's digest into the owner-only ``run_dir/web-login/`` folder (see ``security.py``).

waitress has no public stop: the listening socket and every connection are closed on waitress's own loop thread
(through its trigger), the loop then ends by itself, the worker threads are shut down with a timeout, and only then
is the trigger's pipe closed (workers pull it as they finish requests).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from waitress import trigger as waitress_trigger
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from proxy.config.paths import Paths, write_private_file

from .context import PageAddress, WebContext
from .opener import clear_openers, open_signed_in, opener_dir
from .security import LoginTokens, Sessions, mint_token_file

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["SettingsServer", "cli_login_url", "login_dir", "read_web_info", "sessions_file", "web_file"]

log = logging.getLogger("headway.web")

THREAD_NAME = "headway-web"


def web_file(paths: Paths) -> Path:
    return paths.run_dir / "web.json"


def login_dir(paths: Paths) -> Path:
    return paths.run_dir / "web-login"


def sessions_file(paths: Paths) -> Path:
    """The signed-in browsers' session digests and CSRF tokens (0600), so open tabs outlive a restart."""
    return paths.run_dir / "web-sessions.json"


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


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``port``, or on a free port when ``port`` cannot be had (the warning says why)."""
    try:
        return socket.create_server((host, port), backlog=64)
    except OSError as exc:
        if port == 0:
            raise
        reason = exc.strerror or str(exc)
    sock = socket.create_server((host, 0), backlog=64)
    log.warning(
        "the settings page's port %d is not available (%s); it is on port %d this time: bookmarks and open tabs of "
        "port %d find it again once that port is free and Headway restarts (setting web.port)",
        port,
        reason,
        sock.getsockname()[1],
        port,
    )
    return sock


class _AppOnFirstRequest:
    """The WSGI app that builds the Flask app (``app.create_app``) when the page serves its first request: a gateway
    whose page nobody opens never imports Flask, werkzeug, Jinja or the views (``docs/architecture.md``, "What each
    mode imports"). Waitress's worker threads may arrive together; one builds, the others wait for it."""

    def __init__(self, build: Callable[[], Flask]) -> None:
        self._build = build
        self._app: Flask | None = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._app is not None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        app = self._app
        if app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._build()
                app = self._app
        return app(environ, start_response)


class SettingsServer:
    def __init__(
        self, context: WebContext, *, host: str = "127.0.0.1", port: int | None = None, threads: int = 6
    ) -> None:
        self.context = context
        self.host = host
        self.requested_port = port  # None: the settings' web.port, read at start()
        self.threads = threads
        self.tokens = LoginTokens(login_dir(context.paths))
        self.sessions = Sessions(file=sessions_file(context.paths))
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
        wanted = (
            self.requested_port if self.requested_port is not None else self.context.store.current.web.port
        )
        sock = _listen(self.host, wanted)
        self._port = int(sock.getsockname()[1])
        self.context.address = PageAddress(url=self.url, port=self._port, wanted=wanted)
        try:
            self.tokens.prepare()
            clear_openers(opener_dir(self.context.paths))
            app = _AppOnFirstRequest(partial(self._create_app, f"headway_session_{self._port}"))
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
            self.context.address = None
            raise
        self._server = server
        self._thread = threading.Thread(target=server.run, name=THREAD_NAME, daemon=True)
        self._thread.start()
        self._write_info()
        log.info("settings page on %s", self.url)

    def _create_app(self, cookie_name: str) -> Flask:
        from .app import create_app

        return create_app(self.context, tokens=self.tokens, sessions=self.sessions, cookie_name=cookie_name)

    def _write_info(self) -> None:
        paths = self.context.paths
        paths.run_dir.mkdir(parents=True, exist_ok=True)
        wanted = self.context.address.wanted if self.context.address is not None else 0
        info = {"pid": os.getpid(), "url": self.url, "started_at": time.time(), "wanted_port": wanted}
        write_private_file(web_file(paths), json.dumps(info).encode())

    def login_url(self) -> str:
        """A one-time URL that signs a browser in (valid once, for 60 s)."""
        return f"{self.url}/login?token={self.tokens.mint()}"

    def open_browser(self) -> bool:
        """Open the page, signed in, in the user's browser (through an opener page: the token stays off the
        browser's command line). Never raises."""
        try:
            url = self.login_url()
        except RuntimeError as exc:
            log.warning("cannot open the settings page: %s", exc)
            return False
        return open_signed_in(self.context.paths, url)

    def stop(self, timeout: float = 3.0) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        deadline = time.monotonic() + timeout
        if self.context.logins is not None:
            self.context.logins.stop(timeout=min(2.0, timeout))
        helpers = list(self.context.caches.values())
        self.context.caches.clear()  # a server started again on this context makes new ones
        for helper in helpers:  # the relay setups' and the analyses' threads
            stop = getattr(helper, "stop", None)
            if callable(stop):
                stop(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
        socket_map: dict[int, Any] = getattr(server, "_map", None) or getattr(server, "map", {})
        # The wake-up pipe (waitress's trigger) outlives the loop: every worker pulls it when it finishes a request,
        # so closing it on the loop thread let a pull that raced the stop write to a closed descriptor — EBADF, or a
        # byte into whatever file or socket took the number next. It is closed last, once no thread can pull it.
        triggers = [d for d in list(socket_map.values()) if isinstance(d, waitress_trigger.trigger)]

        def close_connections() -> None:
            """On the loop thread: close the listener and every connection; the loop then finds nothing to serve."""
            for dispatcher in list(socket_map.values()):
                try:
                    if isinstance(dispatcher, waitress_trigger.trigger):
                        dispatcher.del_channel()  # out of the loop, its pipe still open
                    elif isinstance(dispatcher, BaseWSGIServer):
                        wasyncore.dispatcher.close(dispatcher)  # its own close() would close the trigger too
                    elif isinstance(dispatcher, HTTPChannel):
                        dispatcher.handle_close()  # closes its buffers too: a static file being sent, say
                    else:
                        dispatcher.close()
                except Exception as exc:  # a worker closing the same connection at this moment, say
                    log.debug("closing %r: %s", dispatcher, exc)
            socket_map.clear()

        if thread.is_alive() and triggers:
            triggers[0].pull_trigger(close_connections)
            thread.join(max(0.1, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("the settings page's server did not stop within %.1fs", timeout)
        else:
            close_connections()  # the loop ended: nothing else touches the map now
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=max(0.1, deadline - time.monotonic()))
        if not thread.is_alive() and not server.task_dispatcher.threads:
            for trigger in triggers:
                trigger.close()
        else:  # a request still running may pull it: its three descriptors stay open rather than be reused under it
            log.warning("a settings page request outlived the stop; its wake-up pipe is left open")
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
