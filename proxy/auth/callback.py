"""What the browser sign-in needs from the server that receives the issuer's redirect — and nothing more.

The issuer redirects the browser to ``http://localhost:1455/auth/callback?code=…&state=…``. Serving that page is the
web side's business (``web_ui/callback.py``, Flask); the login flow only depends on this interface, and the
composition root (``tray/app.py`` for the settings page, ``tray/cli/login.py`` for ``headway login``) hands it a factory:

    server = factory(state, port=1455)      # state: the login's random `state`
    server.start()                          # PortBusy when another login holds the port
    code = server.wait(timeout)             # CallbackTimeout / CallbackRefused / CallbackClosed
    ...exchange the code, save the login...
    server.finish(CallbackPage(True, "Signed in as …"))   # what the browser tab shows
    server.stop()                           # idempotent, bounded, from any thread

Errors::

    CallbackError
    ├── PortBusy            the port is taken (another login in progress?)
    ├── CallbackTimeout     nothing arrived in time
    ├── CallbackRefused     the issuer sent error=…, the state did not match, or there was no code
    └── CallbackClosed      the server was stopped while waiting (the login was cancelled)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "CALLBACK_PATH",
    "DEFAULT_PORT",
    "CallbackClosed",
    "CallbackError",
    "CallbackPage",
    "CallbackRefused",
    "CallbackServer",
    "CallbackServerFactory",
    "CallbackTimeout",
    "PortBusy",
    "redirect_uri_for",
]

#: The only port the issuer accepts for Headway's (the Codex CLI's) client id.
DEFAULT_PORT = 1455
CALLBACK_PATH = "/auth/callback"


def redirect_uri_for(port: int) -> str:
    return f"http://localhost:{port}{CALLBACK_PATH}"


class CallbackError(Exception):
    """The browser sign-in's callback did not deliver a code; the message says why."""


class PortBusy(CallbackError):
    def __init__(self, port: int) -> None:
        self.port = port
        super().__init__(
            f"port {port} is in use — another login may be in progress (a Codex CLI or OpenCode login?); "
            "finish or cancel it and try again"
        )


class CallbackTimeout(CallbackError):
    pass


class CallbackRefused(CallbackError):
    pass


class CallbackClosed(CallbackError):
    pass


@dataclass(frozen=True, slots=True)
class CallbackPage:
    """What the browser tab shows at the end: success or failure, and one sentence of detail."""

    ok: bool
    message: str


class CallbackServer(Protocol):
    """Receives one login's redirect on 127.0.0.1:`port`. Every method is thread-safe."""

    @property
    def redirect_uri(self) -> str:
        """``http://localhost:<bound port>/auth/callback`` once started."""
        ...

    def start(self) -> None:
        """Bind and serve; PortBusy when the port is taken, CallbackError when it cannot listen otherwise."""
        ...

    def wait(self, timeout: float) -> str:
        """The authorization code once the browser brings it (state checked), within `timeout` seconds."""
        ...

    def finish(self, page: CallbackPage) -> None:
        """What the waiting browser tab shows (first call wins)."""
        ...

    def stop(self) -> None:
        """Release waiters (CallbackClosed) and stop serving; idempotent and bounded."""
        ...


class CallbackServerFactory(Protocol):
    """Builds the server for one login: `state` is the value the callback must carry, `port` where to listen
    (0 picks a free one, for tests)."""

    def __call__(self, state: str, *, port: int) -> CallbackServer: ...
