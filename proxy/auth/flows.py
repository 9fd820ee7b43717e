"""Signing in a ChatGPT Plus/Pro account, for the CLI and the settings page alike.

Two flows, each ``start()`` then ``finish()``, both ending in :func:`proxy.auth.save.save_chatgpt_login`:

    login = BrowserLogin(store, keychain, cfg, callback_server=factory, label="work")
    url = login.start()            # the callback server listens on 127.0.0.1:1455, the browser opens
    result = login.finish()        # waits for the callback, exchanges the code, saves → LoginResult

    login = DeviceLogin(store, keychain, cfg)
    code = login.start()           # show code.verification_url and code.user_code
    result = login.finish()        # polls until approved (bounded), exchanges, saves

The browser flow serves its callback through the ``CallbackServerFactory`` it is given (``proxy.auth.callback``;
the implementation is ``web_ui.callback.CallbackServer``, handed in by the composition root): ``proxy`` never imports
the web side.

Both are synchronous: each HTTP step runs in a short-lived event loop of its own with a fresh ``httpx.AsyncClient``.
That suits the CLI, and the settings page runs ``finish()`` on a worker thread; never call them on a thread that
runs an event loop. ``cancel()`` may be called from any thread and makes a pending ``finish()`` raise
LoginCancelled promptly.

Errors, each with a message fit for the user (and never a token):

    LoginError                        the login did not complete (proxy.auth.errors)
    └── LoginCancelled                cancel() was called
    CallbackError, PortBusy           the callback port is taken (another login in progress) (proxy.auth.callback)
    LoginTimeout                      not finished in time (browser or device)
    DeviceCodeUnavailable             device login is not enabled for this account
    OAuthError                        other issuer failures (PermanentAuthError, TransientAuthError)
    proxy.secrets.keychain.KeychainError      no usable keychain
    proxy.config.settings.SettingsError      the settings file is invalid
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import threading
import time
import webbrowser
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

import httpx

from proxy.auth.callback import (
    DEFAULT_PORT,
    CallbackClosed,
    CallbackPage,
    CallbackRefused,
    CallbackServer,
    CallbackServerFactory,
    CallbackTimeout,
)
from proxy.auth.errors import DeviceCodeUnavailable, LoginCancelled, LoginError, LoginTimeout, OAuthError
from proxy.auth.issuer import (
    DEVICE_LOGIN_TIMEOUT,
    DeviceCode,
    OAuthConfig,
    authorize_url,
    exchange_code,
    poll_device_flow,
    start_device_flow,
)
from proxy.auth.pkce import new_pkce, new_state
from proxy.auth.save import clean_label, save_chatgpt_login
from proxy.config.settings import Account, Settings, SettingsError, effective_upstreams
from proxy.config.store import SettingsStore
from proxy.secrets.keychain import Keychain, KeychainError

__all__ = [
    "BROWSER_LOGIN_TIMEOUT",
    "CALLBACK_PORT_ENV",
    "BrowserLogin",
    "DeviceLogin",
    "LoginResult",
    "callback_port",
    "oauth_config",
]

log = logging.getLogger("headway.login")

BROWSER_LOGIN_TIMEOUT = 900.0
CALLBACK_PORT_ENV = "HEADWAY_OAUTH_CALLBACK_PORT"
DEVICE_LOGIN_DISABLED = (
    "device login is not enabled for this account: enable it in ChatGPT settings → Security, "
    "or use the browser login"
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LoginResult:
    account: Account
    created: bool

    @property
    def action(self) -> Literal["added", "updated"]:
        return "added" if self.created else "updated"

    def summary(self) -> str:
        """``signed in as EMAIL (plan PLAN) — account ID added|updated``"""
        who = self.account.email or self.account.label
        plan = self.account.plan_type or "unknown"
        return f"signed in as {who} (plan {plan}) — account {self.account.id} {self.action}"


# -- configuration -------------------------------------------------------------------------------------------------


def oauth_config(settings: Settings, environ: Mapping[str, str]) -> OAuthConfig:
    """The issuer in force: the settings' `upstreams.openai_auth`, overridden by HEADWAY_OPENAI_AUTH_URL."""
    return OAuthConfig(issuer=effective_upstreams(settings, environ).openai_auth)


def callback_port(environ: Mapping[str, str]) -> int:
    """1455 — the only port the issuer accepts — unless HEADWAY_OAUTH_CALLBACK_PORT moves it (tests only)."""
    raw = environ.get(CALLBACK_PORT_ENV, "").strip()
    if not raw:
        return DEFAULT_PORT
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise LoginError(f"{CALLBACK_PORT_ENV} must be a port number (got {raw!r})")
    return port


# -- running the HTTP steps ----------------------------------------------------------------------------------------


class _Runner:
    """Runs one coroutine at a time in a short-lived event loop with a fresh client; `cancel()` from any thread."""

    def __init__(self, http_timeout: float) -> None:
        self._http_timeout = http_timeout
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def run(self, step: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
        async def main() -> T:
            task = asyncio.current_task()
            with self._lock:
                if self._cancelled.is_set():
                    raise LoginCancelled("the sign-in was cancelled")
                self._loop, self._task = asyncio.get_running_loop(), task
            try:
                async with httpx.AsyncClient(timeout=self._http_timeout) as client:
                    return await step(client)
            finally:
                with self._lock:
                    self._loop = self._task = None

        try:
            return asyncio.run(main())
        except asyncio.CancelledError as exc:
            if self._cancelled.is_set():
                raise LoginCancelled("the sign-in was cancelled") from exc
            raise

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()
            loop, task = self._loop, self._task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop just closed: the step is over anyway
                pass


def _check_keychain(keychain: Keychain) -> None:
    """Fail before the user signs in rather than after, when the tokens could not be stored."""
    if keychain.backend == "system" and not keychain.secure:
        raise KeychainError(
            f"No secure keychain is available on this machine ({keychain.describe()}). Headway keeps tokens only "
            "in the OS keychain. Start a Secret Service (e.g. gnome-keyring) in this session, or — on a headless "
            'server, knowing it is not encrypted — set "secrets": {"backend": "file"} in the settings file.'
        )


def _default_opener(url: str) -> bool:
    """Open the system browser; False when there is none to open (a Linux box without a display, say), so the
    caller shows the URL instead of Python starting a text-mode browser in the terminal."""
    if (
        sys.platform.startswith("linux")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# -- the flows -------------------------------------------------------------------------------------------------------


class BrowserLogin:
    """PKCE sign-in in the browser, with the callback served on 127.0.0.1:`port` for the length of the login by a
    server from `callback_server` (``web_ui.callback.CallbackServer`` in the app).

    `port` is 1455 in real use (the issuer accepts no other); tests pass 0 or a free port. `opened` says whether a
    browser was opened (False with `open_browser=False`, or when none could be): then show the user `url`.
    `progress` hears short step-by-step messages.
    """

    def __init__(
        self,
        store: SettingsStore,
        keychain: Keychain,
        cfg: OAuthConfig,
        *,
        callback_server: CallbackServerFactory,
        label: str | None = None,
        port: int = DEFAULT_PORT,
        open_browser: bool = True,
        timeout: float = BROWSER_LOGIN_TIMEOUT,
        opener: Callable[[str], bool] = _default_opener,
        progress: Progress = _quiet,
    ) -> None:
        self._store = store
        self._keychain = keychain
        self._cfg = cfg
        self._callback_server = callback_server
        self._label = clean_label(label)
        self._port = port
        self._open_browser = open_browser
        self._timeout = timeout
        self._opener = opener
        self._progress = progress
        self._pkce = new_pkce()
        self._state = new_state()
        self._runner = _Runner(cfg.http_timeout)
        self._server: CallbackServer | None = None
        self._deadline = 0.0
        self.url: str | None = None
        self.opened = False

    def start(self) -> str:
        """Listen for the callback (PortBusy when taken), open the browser; the authorize URL."""
        if self._server is not None:
            raise RuntimeError("this login was already started")
        _check_keychain(self._keychain)
        server = self._callback_server(self._state, port=self._port)
        server.start()
        self._server = server
        try:
            self._cfg = dataclasses.replace(self._cfg, redirect_uri=server.redirect_uri)
            self._deadline = time.monotonic() + self._timeout
            self.url = authorize_url(self._cfg, self._pkce, self._state)
            if self._runner.cancelled:
                raise LoginCancelled("the sign-in was cancelled")
        except BaseException:
            server.stop()
            raise
        if self._open_browser:
            try:
                self.opened = bool(self._opener(self.url))
            except Exception:
                log.warning("could not open a browser", exc_info=True)
        return self.url

    def finish(self) -> LoginResult:
        """Wait for the browser (bounded), exchange the code, save; the browser tab then shows the outcome."""
        server = self._server
        if server is None:
            raise RuntimeError("start() the login first")
        try:
            self._progress("waiting for the sign-in in the browser")
            try:
                code = server.wait(max(0.0, self._deadline - time.monotonic()))
            except CallbackTimeout as exc:
                raise LoginTimeout(str(exc)) from exc
            except CallbackClosed as exc:
                raise LoginCancelled(str(exc)) from exc
            except CallbackRefused as exc:
                raise LoginError(str(exc)) from exc
            try:
                self._progress("sign-in received; exchanging the code for tokens")
                tokens = self._runner.run(
                    lambda client: exchange_code(
                        client, self._cfg, code, self._pkce.verifier, self._cfg.redirect_uri
                    )
                )
                self._progress("saving the login")
                account, created = save_chatgpt_login(self._store, self._keychain, tokens, self._label)
            except (LoginError, OAuthError, KeychainError, SettingsError) as exc:
                server.finish(CallbackPage(False, f"Headway could not finish the sign-in: {exc}"))
                raise
            except BaseException:
                server.finish(
                    CallbackPage(False, "Headway could not finish the sign-in; see Headway for details.")
                )
                raise
            who = account.email or account.label
            plan = f" (plan {account.plan_type})" if account.plan_type else ""
            server.finish(CallbackPage(True, f"Headway signed in as {who}{plan}."))
            return LoginResult(account, created)
        finally:
            server.stop()

    def cancel(self) -> None:
        """From any thread: a pending finish() raises LoginCancelled; the callback port is freed."""
        self._runner.cancel()
        server = self._server
        if server is not None:
            server.stop()


class DeviceLogin:
    """Device-code sign-in for machines without a browser: show the URL and code, then poll (bounded)."""

    def __init__(
        self,
        store: SettingsStore,
        keychain: Keychain,
        cfg: OAuthConfig,
        *,
        label: str | None = None,
        timeout: float = DEVICE_LOGIN_TIMEOUT,
        progress: Progress = _quiet,
    ) -> None:
        self._store = store
        self._keychain = keychain
        self._cfg = cfg
        self._label = clean_label(label)
        self._timeout = timeout
        self._progress = progress
        self._runner = _Runner(cfg.http_timeout)
        self.code: DeviceCode | None = None

    def start(self) -> DeviceCode:
        """Ask the issuer for a code to show the user (DeviceCodeUnavailable when device login is off)."""
        _check_keychain(self._keychain)
        try:
            self.code = self._runner.run(lambda client: start_device_flow(client, self._cfg))
        except DeviceCodeUnavailable as exc:
            raise DeviceCodeUnavailable(DEVICE_LOGIN_DISABLED) from exc
        return self.code

    def finish(self) -> LoginResult:
        """Poll until the user approves (at most `timeout` seconds), exchange, save."""
        code = self.code
        if code is None:
            raise RuntimeError("start() the login first")
        self._progress("waiting for the code to be approved")
        tokens = self._runner.run(
            lambda client: poll_device_flow(client, self._cfg, code, timeout=self._timeout)
        )
        self._progress("approved; saving the login")
        account, created = save_chatgpt_login(self._store, self._keychain, tokens, self._label)
        return LoginResult(account, created)

    def cancel(self) -> None:
        """From any thread: a pending start() or finish() raises LoginCancelled."""
        self._runner.cancel()
