"""Signing in a ChatGPT Plus/Pro account, for the CLI and the settings page alike.

Two flows, each ``start()`` then ``finish()``, both ending in :func:`save_chatgpt_login`:

    login = BrowserLogin(store, keychain, cfg, label="work")
    url = login.start()            # listens on 127.0.0.1:1455, opens the browser (unless open_browser=False)
    result = login.finish()        # waits for the callback, exchanges the code, saves → LoginResult

    login = DeviceLogin(store, keychain, cfg)
    code = login.start()           # show code.verification_url and code.user_code
    result = login.finish()        # polls until approved (bounded), exchanges, saves

Both are synchronous: each HTTP step runs in a short-lived event loop of its own with a fresh ``httpx.AsyncClient``.
That suits the CLI, and the settings page runs ``finish()`` on a worker thread; never call them on a thread that
runs an event loop. ``cancel()`` may be called from any thread and makes a pending ``finish()`` raise
LoginCancelled promptly.

The ChatGPT account id from the id token is the account's identity: signing in to an account Headway already has
updates it (plan, email, tokens) instead of adding it again. Tokens go to the keychain only — the TokenSet JSON under
``account_secret_name(account.id)`` — and are stored before the account appears in the settings file.

Errors, each with a message fit for the user (and never a token):

    LoginError                        the login did not complete: refused in the browser, state mismatch, no
    │                                 account id, an unusable label, the account list changed underneath
    └── LoginCancelled                cancel() was called
    web_ui.callback.PortBusy          the callback port is taken (another login in progress); PortBusy and its
                                      base CallbackError are re-exported here
    proxy.oauth.LoginTimeout          not finished in time (browser or device)
    proxy.oauth.DeviceCodeUnavailable device login is not enabled for this account
    proxy.oauth.OAuthError            other issuer failures (PermanentAuthError, TransientAuthError)
    proxy.keychain.KeychainError      no usable keychain
    proxy.settings.SettingsError      the settings file is invalid
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

from web_ui.callback import (
    DEFAULT_PORT,
    CallbackClosed,
    CallbackError,
    CallbackPage,
    CallbackRefused,
    CallbackServer,
    CallbackTimeout,
    PortBusy,
)

from .accounts import AccountError, add_account_with_secret, new_account_id
from .keychain import Keychain, KeychainError, account_secret_name
from .oauth import (
    DEVICE_LOGIN_TIMEOUT,
    DeviceCode,
    DeviceCodeUnavailable,
    LoginTimeout,
    OAuthConfig,
    OAuthError,
    TokenSet,
    authorize_url,
    exchange_code,
    new_pkce,
    new_state,
    poll_device_flow,
    start_device_flow,
)
from .settings import Account, Settings, SettingsError, effective_upstreams
from .settings_store import SettingsStore

__all__ = [
    "BROWSER_LOGIN_TIMEOUT",
    "CALLBACK_PORT_ENV",
    "BrowserLogin",
    "CallbackError",
    "DeviceLogin",
    "LoginCancelled",
    "LoginError",
    "LoginResult",
    "PortBusy",
    "callback_port",
    "oauth_config",
    "save_chatgpt_login",
]

log = logging.getLogger("headway.login")

BROWSER_LOGIN_TIMEOUT = 900.0
CALLBACK_PORT_ENV = "HEADWAY_OAUTH_CALLBACK_PORT"
DEVICE_LOGIN_DISABLED = (
    "device login is not enabled for this account: enable it in ChatGPT settings → Security, "
    "or use the browser login"
)
_LABEL_MAX = 60

T = TypeVar("T")


class LoginError(Exception):
    """A sign-in did not complete; the message says why."""


class LoginCancelled(LoginError):
    pass


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


def _clean_label(label: str | None) -> str | None:
    if label is None:
        return None
    label = label.strip()
    if not label:
        raise LoginError("the label is empty")
    if len(label) > _LABEL_MAX:
        raise LoginError(f"the label is longer than {_LABEL_MAX} characters")
    return label


# -- saving ----------------------------------------------------------------------------------------------------------


def _chatgpt_account(settings: Settings, chatgpt_account_id: str) -> Account | None:
    for account in settings.accounts:
        if account.kind == "chatgpt" and account.chatgpt_account_id == chatgpt_account_id:
            return account
    return None


def _id_taken(settings: Settings, account_id: str) -> bool:
    return any(account.id == account_id for account in settings.accounts)


def _default_id_base(tokens: TokenSet) -> str:
    local = (tokens.email or "").split("@", 1)[0]
    return f"chatgpt-{local}" if local else "chatgpt"


def save_chatgpt_login(
    store: SettingsStore, keychain: Keychain, tokens: TokenSet, label: str | None = None
) -> tuple[Account, bool]:
    """Store a fresh login: (the account, True when it was added / False when an existing one was updated).

    The ChatGPT account id is the identity: an account with the same id is updated (plan and email; the label only
    when one is given) and its keychain secret replaced. Otherwise a new account is added, its id reserved in the
    settings file before the secret is stored (proxy/accounts.py), so two sign-ins at once never share an id.
    """
    label = _clean_label(label)
    chatgpt_id = tokens.account_id
    if not chatgpt_id:
        raise LoginError(
            "the sign-in did not say which ChatGPT account it is for (no account id in the id token); "
            "try again, and check that the account has a ChatGPT Plus/Pro plan"
        )
    store.reload()
    existing = _chatgpt_account(store.current, chatgpt_id)
    if existing is not None:
        return _update(store, keychain, tokens, chatgpt_id, existing.id, label), False
    return _add(store, keychain, tokens, chatgpt_id, label), True


def _update(
    store: SettingsStore,
    keychain: Keychain,
    tokens: TokenSet,
    chatgpt_id: str,
    account_id: str,
    label: str | None,
) -> Account:
    # Replacing the secret first is safe: it is the same account's newer login.
    keychain.set(account_secret_name(account_id), tokens.to_json())
    updated: list[Account] = []

    def edit(settings: Settings) -> None:
        account = _chatgpt_account(settings, chatgpt_id)
        if account is None:  # removed while we signed in: bring it back under the id its secret now has
            if _id_taken(settings, account_id):
                raise LoginError("the account list changed while signing in; try again")
            account = Account(id=account_id, kind="chatgpt", label=label or tokens.email or "ChatGPT")
            settings.accounts.append(account)
        account.chatgpt_account_id = chatgpt_id
        if tokens.plan_type:
            account.plan_type = tokens.plan_type
        if tokens.email:
            account.email = tokens.email
        if label:
            account.label = label
        updated.append(account.model_copy())

    store.update(edit)
    log.info("ChatGPT account %s: new login stored", account_id)
    return updated[0]


def _add(
    store: SettingsStore, keychain: Keychain, tokens: TokenSet, chatgpt_id: str, label: str | None
) -> Account:
    # The id is reserved under the settings lock before the tokens are stored (proxy/accounts.py): two sign-ins at
    # once can never share it, and a failed one deletes no secret it did not write.
    def build(settings: Settings) -> Account:
        if _chatgpt_account(settings, chatgpt_id) is not None:
            raise LoginError("the account list changed while signing in; try again")
        return Account(
            id=new_account_id(settings, label or _default_id_base(tokens)),
            kind="chatgpt",
            label=label or (tokens.email or "ChatGPT")[:_LABEL_MAX],
            chatgpt_account_id=chatgpt_id,
            plan_type=tokens.plan_type,
            email=tokens.email,
        )

    try:
        added = add_account_with_secret(store, keychain, build, tokens.to_json())
    except AccountError as exc:
        raise LoginError(f"{exc}; try again") from exc
    log.info("ChatGPT account %s added", added.id)
    return added


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
    """PKCE sign-in in the browser, with the callback served on 127.0.0.1:`port` for the length of the login.

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
        self._label = _clean_label(label)
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
        server = CallbackServer(self._state, port=self._port)
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
        self._label = _clean_label(label)
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
