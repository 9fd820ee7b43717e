"""Every way signing in to ChatGPT or refreshing its tokens can fail; messages carry no token.

    OAuthError                    the issuer's side (raised with httpx's exceptions translated)
    ├── PermanentAuthError        the grant is dead (invalid_grant; refresh token reused, revoked or expired):
    │                             the account needs a new login
    ├── TransientAuthError        network error, timeout, 408, 429, 5xx, keychain hiccup: try later (retry_after)
    ├── DeviceCodeUnavailable     device-code login is not enabled for this account (404 on usercode)
    └── LoginTimeout              the user did not finish a login in time
    LoginError                    a sign-in did not complete: refused in the browser, state mismatch, no account
    │                             id, an unusable label, the account list changed underneath
    └── LoginCancelled            the sign-in was cancelled

The callback server's own errors (PortBusy and the rest) are in ``proxy.auth.callback``.
"""

from __future__ import annotations

__all__ = [
    "DeviceCodeUnavailable",
    "LoginCancelled",
    "LoginError",
    "LoginTimeout",
    "OAuthError",
    "PermanentAuthError",
    "TransientAuthError",
]


class OAuthError(Exception):
    """Signing in or refreshing failed; the message says why (without secrets)."""


class PermanentAuthError(OAuthError):
    """The stored grant can never work again: the account needs a new login."""


class TransientAuthError(OAuthError):
    """Worth retrying later; `retry_after` is the issuer's Retry-After in seconds, when it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeviceCodeUnavailable(OAuthError):
    """The issuer does not offer device-code login for this account: use the browser login."""


class LoginTimeout(OAuthError):
    """The user did not finish the login in time."""


class LoginError(Exception):
    """A sign-in did not complete; the message says why."""


class LoginCancelled(LoginError):
    pass
