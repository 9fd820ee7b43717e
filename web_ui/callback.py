"""The OAuth redirect target of a ChatGPT browser sign-in: ``http://localhost:1455/auth/callback``.

The issuer only accepts that redirect URI (host spelled ``localhost``), so a sign-in — from the CLI or the settings
page — briefly runs this tiny Flask app on 127.0.0.1:1455, for the length of one login. ``CallbackServer`` implements
``proxy.auth.callback.CallbackServer`` (the class itself is the ``CallbackServerFactory`` the composition root hands
``proxy.auth.BrowserLogin``); the page, the errors and the port are defined there:

    server = CallbackServer(state)            # state: the login's random `state`
    server.start()                            # PortBusy when another login holds the port
    code = server.wait(timeout)               # CallbackTimeout / CallbackRefused / CallbackClosed
    ...exchange the code, save the login...
    server.finish(CallbackPage(True, "Signed in as …"))   # what the browser tab shows
    server.stop()

The browser's request for ``/auth/callback`` is held until ``finish`` (bounded by ``reply_timeout``), so the tab shows
whether the whole sign-in worked, not merely that a code arrived. The page is plain and self-contained (no external
assets, a strict CSP). Only ``GET /auth/callback`` exists; any other path is 404, and any Host other than
``localhost:<port>`` / ``127.0.0.1:<port>`` is refused (DNS rebinding). Request lines are never logged: they carry
the authorization code.

Errors are ``proxy.auth.callback``'s: PortBusy, CallbackTimeout, CallbackRefused, CallbackClosed (all CallbackError).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import html
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wsgi import ClosingIterator

from proxy.auth.callback import (
    CALLBACK_PATH,
    DEFAULT_PORT,
    CallbackClosed,
    CallbackError,
    CallbackPage,
    CallbackRefused,
    CallbackTimeout,
    PortBusy,
    redirect_uri_for,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["CallbackServer", "create_callback_app"]

log = logging.getLogger("headway.oauth.callback")

THREAD_NAME = "headway-oauth-callback"

_WSAEADDRINUSE = 10048
_WSAEACCES = 10013  # Windows: another socket holds the port exclusively


# -- the page ------------------------------------------------------------------------------------------------------

_STYLE = (
    "body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;min-height:100vh;display:flex;"
    "align-items:center;justify-content:center;background:#f6f7f9;color:#1d2430}"
    "main{max-width:32rem;margin:2rem;padding:2rem 2.5rem;background:#fff;border-radius:12px;"
    "box-shadow:0 1px 4px rgba(0,0,0,.12)}"
    "h1{font-size:1.35rem;margin:0 0 .75rem}.ok h1{color:#1a7f37}.fail h1{color:#b42318}"
    "p{margin:.5rem 0}.hint{color:#5b6472;font-size:.9rem}"
)


def _style_hash() -> str:
    digest = hashlib.sha256(_STYLE.encode()).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def _render(page: CallbackPage, status: int) -> Response:
    title = "Signed in to ChatGPT" if page.ok else "Sign-in failed"
    hint = (
        "You can close this tab and return to Headway."
        if page.ok
        else "Close this tab, return to Headway and try again."
    )
    document = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)} — Headway</title><style>{_STYLE}</style></head>"
        f"<body><main class='{'ok' if page.ok else 'fail'}' id='result' data-ok='{str(page.ok).lower()}'>"
        f"<h1>{html.escape(title)}</h1><p id='message'>{html.escape(page.message)}</p>"
        f"<p class='hint'>{html.escape(hint)}</p></main></body></html>"
    )
    response = Response(document, status=status, mimetype="text/html")
    _harden(response, f"default-src 'none'; style-src '{_style_hash()}'")
    return response


def _plain(text: str, status: int) -> Response:
    response = Response(text + "\n", status=status, mimetype="text/plain")
    _harden(response, "default-src 'none'")
    return response


def _harden(response: Response, csp: str) -> None:
    response.headers["Content-Security-Policy"] = (
        f"{csp}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # the URL carries the authorization code
    response.headers["Cache-Control"] = "no-store"


# -- the app -------------------------------------------------------------------------------------------------------


def create_callback_app(
    *,
    state: str,
    port: int,
    on_code: Callable[[str], CallbackPage],
    on_refused: Callable[[str], None],
) -> Flask:
    """The callback app for one login.

    `on_code(code)` runs in the request's thread once `state` matched; the page it returns is shown. `on_refused`
    hears why a callback ended the login (the issuer's `error`, a state mismatch, no code); the tab then shows a
    failure page at once. Neither may raise.
    """
    app = Flask(__name__, static_folder=None)
    allowed_hosts = {f"localhost:{port}", f"127.0.0.1:{port}"}
    expected_state = state.encode()

    @app.before_request
    def check_host() -> Response | None:
        if request.host.lower() not in allowed_hosts:
            return _plain("Bad request: unexpected Host header.", 400)
        return None

    @app.get(CALLBACK_PATH)
    def callback() -> Response:
        args = request.args
        received_state = args.get("state", "").encode()
        if not hmac.compare_digest(received_state, expected_state):
            reason = (
                "the sign-in response does not belong to this login (state mismatch); start the login again"
            )
            on_refused(reason)
            return _render(CallbackPage(False, f"Headway refused this sign-in: {reason}."), 400)
        error = args.get("error")
        if error:
            description = args.get("error_description", "").strip()
            reason = (
                f"the sign-in was refused ({error[:100]}"
                + (f": {description[:200]}" if description else "")
                + ")"
            )
            on_refused(reason)
            return _render(CallbackPage(False, reason[:1].upper() + reason[1:] + "."), 400)
        code = args.get("code")
        if not code:
            reason = "the sign-in response carried no authorization code"
            on_refused(reason)
            return _render(CallbackPage(False, reason[:1].upper() + reason[1:] + "."), 400)
        page = on_code(code)
        return _render(page, 200 if page.ok else 400)

    @app.errorhandler(404)
    def not_found(_: Exception) -> Response:
        return _plain("Not found.", 404)

    @app.errorhandler(405)
    def not_allowed(_: Exception) -> Response:
        return _plain("Method not allowed.", 405)

    return app


# -- the server ----------------------------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's handler, minus its request log: the request line carries the authorization code."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = getattr(self, "path", "").split("?", 1)[0]
        log.debug("%s %s -> %s", getattr(self, "command", "?"), path[:200], code)

    def log(self, type: str, message: str, *args: Any) -> None:
        log.debug("callback server %s: %s", type, (message % args if args else message).split("?", 1)[0])


@dataclass(frozen=True, slots=True)
class _Arrival:
    code: str | None = None
    refusal: str | None = None


class CallbackServer:
    """Serves the callback app on 127.0.0.1:`port` in a thread, for one login.

    `port=0` picks a free port (tests); `redirect_uri` then names it. `reply_timeout` bounds how long the browser's
    request waits for `finish()`. All methods are thread-safe; `stop()` is idempotent and bounded.
    """

    def __init__(
        self,
        state: str,
        *,
        port: int = DEFAULT_PORT,
        host: str = "127.0.0.1",
        reply_timeout: float = 45.0,
    ) -> None:
        self._state = state
        self._requested_port = port
        self._host = host
        self._reply_timeout = reply_timeout
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0
        self._arrival: _Arrival | None = None
        self._arrived = threading.Event()
        self._page: CallbackPage | None = None
        self._page_ready = threading.Event()
        self._closed = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the callback server is not started")
        return int(self._server.port)

    @property
    def redirect_uri(self) -> str:
        return redirect_uri_for(self.port)

    def start(self) -> None:
        """Bind and serve. Raises PortBusy when the port is taken."""
        if self._server is not None:
            raise RuntimeError("the callback server was already started")
        sock = self._bind()
        try:
            app = create_callback_app(
                state=self._state,
                port=int(sock.getsockname()[1]),
                on_code=self._on_code,
                on_refused=self._on_refused,
            )
            # werkzeug exits the process when it cannot bind, so we bind ourselves and hand it the socket.
            server = make_server(
                self._host,
                0,
                self._tracked(app),
                threaded=True,
                request_handler=_QuietHandler,
                fd=sock.fileno(),
            )
        finally:
            sock.close()  # werkzeug holds a duplicate
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=THREAD_NAME, daemon=True
        )
        self._thread.start()
        log.debug("OAuth callback listening on %s:%s", self._host, server.port)

    def wait(self, timeout: float) -> str:
        """The authorization code, once the browser brings it. Bounded by `timeout` seconds."""
        if self._server is None:
            raise RuntimeError("the callback server is not started")
        self._arrived.wait(max(0.0, timeout))
        with self._lock:
            arrival = self._arrival
        if arrival is None:
            if self._closed.is_set():
                raise CallbackClosed("the sign-in was cancelled")
            raise CallbackTimeout(f"the browser sign-in was not finished within {_minutes(timeout)}")
        if arrival.code is None:
            raise CallbackRefused(arrival.refusal or "the sign-in was refused")
        return arrival.code

    def finish(self, page: CallbackPage) -> None:
        """What the waiting browser tab shows (first call wins)."""
        with self._lock:
            if self._page is None:
                self._page = page
        self._page_ready.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Release waiters, stop accepting, and let a response being written finish — all within `timeout`."""
        deadline = time.monotonic() + timeout
        self._closed.set()
        self._arrived.set()
        self.finish(CallbackPage(False, "Headway stopped waiting for this sign-in."))
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        if thread.is_alive():
            server.shutdown()
            thread.join(max(0.0, deadline - time.monotonic()))
        else:
            server.server_close()
        with self._idle:
            drained = self._idle.wait_for(lambda: self._inflight == 0, max(0.0, deadline - time.monotonic()))
        if thread.is_alive() or not drained:
            log.warning("the OAuth callback server did not stop within %.1f s", timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if sys.platform == "win32":
                # There SO_REUSEADDR would let two listeners share the port; claim it exclusively instead.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
            else:
                # Rebinding over a previous login's TIME_WAIT connections; never over a live listener.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._requested_port))
            sock.listen(16)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE or getattr(exc, "winerror", None) in (
                _WSAEADDRINUSE,
                _WSAEACCES,
            ):
                raise PortBusy(self._requested_port) from exc
            raise CallbackError(f"cannot listen on {self._host}:{self._requested_port} ({exc})") from exc
        return sock

    def _tracked(self, app: Flask) -> WSGIApplication:
        """The app, counting responses until werkzeug has written them (so `stop` can let them finish)."""

        def done() -> None:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

        def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            with self._idle:
                self._inflight += 1
            try:
                body = app(environ, start_response)
            except BaseException:
                done()
                raise
            return ClosingIterator(body, [done])

        return wsgi

    def _on_code(self, code: str) -> CallbackPage:
        with self._lock:
            if self._arrival is None and not self._closed.is_set():
                self._arrival = _Arrival(code=code)
                self._arrived.set()
            elif self._arrival is not None and self._arrival.code != code:
                return CallbackPage(False, "Another sign-in response already arrived for this login.")
        if not self._page_ready.wait(self._reply_timeout):
            return CallbackPage(
                True, "Headway received the sign-in; return to Headway to see whether it completed."
            )
        with self._lock:
            assert self._page is not None
            return self._page

    def _on_refused(self, reason: str) -> None:
        with self._lock:
            if self._arrival is None:
                self._arrival = _Arrival(refusal=reason)
                self._arrived.set()


def _minutes(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} s"
