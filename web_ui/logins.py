"""The ChatGPT sign-ins the settings page starts, and where they end (no Flask: the composition root builds this
with the services, before the page has served anything).

The flows themselves are ``proxy.auth``'s ``BrowserLogin`` / ``DeviceLogin`` (the browser one served by the callback
server the composition root hands :class:`LoginFlows`: :func:`callback_server`, which imports
``web_ui.callback.CallbackServer`` — Flask and werkzeug — only when a browser sign-in starts); :class:`LoginFlows`
runs each one's blocking ``finish()`` on a worker thread of its own (``headway-web-login``) and remembers how it
ended. The page's routes are in ``views/chatgpt.py``.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from proxy.auth import (
    BrowserLogin,
    CallbackError,
    CallbackServerFactory,
    DeviceLogin,
    LoginCancelled,
    LoginError,
    LoginResult,
    OAuthConfig,
    OAuthError,
    callback_port,
    oauth_config,
)
from proxy.config.settings import SettingsError
from proxy.config.store import SettingsStore
from proxy.secrets.keychain import Keychain, KeychainError

if TYPE_CHECKING:
    from .callback import CallbackServer

__all__ = ["Flow", "LoginFlows", "callback_server"]

log = logging.getLogger("headway.web.login")


def callback_server(state: str, *, port: int) -> CallbackServer:
    """The OAuth callback server for one browser sign-in (a :class:`CallbackServerFactory`)."""
    from .callback import CallbackServer

    return CallbackServer(state, port=port)


State = Literal["waiting", "done", "failed", "cancelled"]
MAX_FLOWS = 4
KEEP_FINISHED_SECONDS = 600.0


class _Flow(Protocol):
    def finish(self) -> LoginResult: ...
    def cancel(self) -> None: ...


@dataclass
class Flow:
    id: str
    kind: Literal["browser", "device"]
    login: _Flow
    started: float
    url: str | None = None
    user_code: str | None = None
    state: State = "waiting"
    message: str = ""
    account: dict[str, Any] | None = None
    thread: threading.Thread | None = field(default=None, repr=False)
    finished_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "message": self.message,
            "url": self.url,
            "user_code": self.user_code,
            "account": self.account,
        }


class LoginFlows:
    """The ChatGPT sign-ins the page started; thread-safe."""

    def __init__(
        self,
        store: SettingsStore,
        keychain: Keychain,
        callback_server: CallbackServerFactory,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.keychain = keychain
        self.callback_server = callback_server
        self.environ = dict(os.environ if environ is None else environ)
        self._lock = threading.Lock()
        self._flows: dict[str, Flow] = {}

    def _cfg(self) -> OAuthConfig:
        return oauth_config(self.store.current, self.environ)

    def _admit(self) -> None:
        now = time.time()
        with self._lock:
            for key, flow in list(self._flows.items()):
                if flow.finished_at is not None and now - flow.finished_at > KEEP_FINISHED_SECONDS:
                    del self._flows[key]
            if sum(1 for f in self._flows.values() if f.state == "waiting") >= MAX_FLOWS:
                raise LoginError("too many sign-ins in progress; finish or cancel one first")

    def start_browser(self, label: str | None) -> Flow:
        self._admit()
        login = BrowserLogin(
            self.store,
            self.keychain,
            self._cfg(),
            callback_server=self.callback_server,
            label=label,
            port=callback_port(self.environ),
            open_browser=False,
        )
        url = login.start()
        flow = Flow(id=secrets.token_urlsafe(12), kind="browser", login=login, started=time.time(), url=url)
        flow.message = "Finish signing in in the browser tab that opened."
        self._run(flow)
        return flow

    def start_device(self, label: str | None) -> Flow:
        self._admit()
        login = DeviceLogin(self.store, self.keychain, self._cfg(), label=label)
        code = login.start()
        flow = Flow(
            id=secrets.token_urlsafe(12),
            kind="device",
            login=login,
            started=time.time(),
            url=code.verification_url,
            user_code=code.user_code,
        )
        flow.message = "On any device, open the address below and enter the code."
        self._run(flow)
        return flow

    def _run(self, flow: Flow) -> None:
        def work() -> None:
            try:
                result = flow.login.finish()
            except LoginCancelled:
                self._end(flow, "cancelled", "The sign-in was cancelled.")
            except (LoginError, OAuthError, CallbackError, KeychainError, SettingsError) as exc:
                self._end(flow, "failed", str(exc))
            except Exception:
                log.exception("ChatGPT sign-in failed")
                self._end(flow, "failed", "The sign-in failed; the log has the details.")
            else:
                account = result.account
                flow.account = {
                    "id": account.id,
                    "label": account.label,
                    "email": account.email,
                    "plan_type": account.plan_type,
                }
                self._end(flow, "done", result.summary()[:1].upper() + result.summary()[1:] + ".")

        flow.thread = threading.Thread(target=work, name="headway-web-login", daemon=True)
        with self._lock:
            self._flows[flow.id] = flow
        flow.thread.start()

    def _end(self, flow: Flow, state: State, message: str) -> None:
        with self._lock:
            flow.state = state
            flow.message = message
            flow.finished_at = time.time()

    def get(self, flow_id: str) -> Flow | None:
        with self._lock:
            return self._flows.get(flow_id)

    def cancel(self, flow_id: str) -> Flow | None:
        flow = self.get(flow_id)
        if flow is not None and flow.state == "waiting":
            flow.login.cancel()
        return flow

    def stop(self, timeout: float = 3.0) -> None:
        """Cancel every sign-in in progress and wait (bounded) for their threads."""
        with self._lock:
            flows = list(self._flows.values())
        for flow in flows:
            if flow.state == "waiting":
                flow.login.cancel()
        deadline = time.monotonic() + timeout
        for flow in flows:
            if flow.thread is not None:
                flow.thread.join(max(0.0, deadline - time.monotonic()))
                if flow.thread.is_alive():
                    log.warning("a ChatGPT sign-in did not stop within %.1fs", timeout)
