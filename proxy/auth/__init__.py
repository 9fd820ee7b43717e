"""ChatGPT sign-in and tokens.

    pkce.py       PKCE, the login's state, JWT claims (hand-written: tiny and exact)
    errors.py     the OAuthError and LoginError trees
    token_set.py  TokenSet: one account's tokens, their keychain form, the identity in the id token
    issuer.py     the issuer's endpoints: authorize URL, code exchange, refresh, device code (OAuthConfig)
    tokens.py     TokenManager: valid access tokens, one refresh per account at a time; AuthStatus
    callback.py   the CallbackServer interface the browser flow needs (implemented in web_ui/callback.py)
    save.py       a fresh login stored as an account (keychain first, then settings)
    flows.py      BrowserLogin and DeviceLogin, shared by the CLI and the settings page

Nothing here imports ``web_ui`` or ``tray``: the composition root hands ``BrowserLogin`` its callback server.
"""

from __future__ import annotations

from proxy.auth.callback import (
    DEFAULT_PORT,
    CallbackError,
    CallbackPage,
    CallbackServer,
    CallbackServerFactory,
    PortBusy,
)
from proxy.auth.errors import (
    DeviceCodeUnavailable,
    LoginCancelled,
    LoginError,
    LoginTimeout,
    OAuthError,
    PermanentAuthError,
    TransientAuthError,
)
from proxy.auth.flows import (
    BROWSER_LOGIN_TIMEOUT,
    BrowserLogin,
    DeviceLogin,
    LoginResult,
    callback_port,
    oauth_config,
)
from proxy.auth.issuer import DEVICE_LOGIN_TIMEOUT, DeviceCode, OAuthConfig
from proxy.auth.save import save_chatgpt_login
from proxy.auth.token_set import TokenSet
from proxy.auth.tokens import AuthStatus, TokenManager

__all__ = [
    "BROWSER_LOGIN_TIMEOUT",
    "DEFAULT_PORT",
    "DEVICE_LOGIN_TIMEOUT",
    "AuthStatus",
    "BrowserLogin",
    "CallbackError",
    "CallbackPage",
    "CallbackServer",
    "CallbackServerFactory",
    "DeviceCode",
    "DeviceCodeUnavailable",
    "DeviceLogin",
    "LoginCancelled",
    "LoginError",
    "LoginResult",
    "LoginTimeout",
    "OAuthConfig",
    "OAuthError",
    "PermanentAuthError",
    "PortBusy",
    "TokenManager",
    "TokenSet",
    "TransientAuthError",
    "callback_port",
    "oauth_config",
    "save_chatgpt_login",
]
