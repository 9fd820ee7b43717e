"""The issuer's endpoints (the Codex CLI's protocol, ``shared/reference/chatgpt-codex.md``): the authorize URL, the
code exchange, refresh, and the device-code flow.

Every URL hangs off ``OAuthConfig.issuer`` so tests (and ``HEADWAY_OPENAI_AUTH_URL``, read by the caller) can point it
elsewhere. HTTP goes through the ``httpx.AsyncClient`` given; nothing is stored here. Failures are
``proxy.auth.errors``' OAuthError tree, messages with HTTP statuses and the issuer's error codes, never a token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from proxy import __version__
from proxy.auth.errors import (
    DeviceCodeUnavailable,
    LoginTimeout,
    OAuthError,
    PermanentAuthError,
    TransientAuthError,
)
from proxy.auth.pkce import Pkce
from proxy.auth.token_set import TokenSet, nonempty_str
from proxy.logs import redact
from proxy.wire.retry_after import as_number, retry_after_seconds

__all__ = [
    "DEVICE_LOGIN_TIMEOUT",
    "DeviceCode",
    "OAuthConfig",
    "authorize_url",
    "exchange_code",
    "poll_device_flow",
    "refresh",
    "start_device_flow",
]

log = logging.getLogger("headway.oauth")

REFRESH_SCOPE = "openid profile email"
DEVICE_LOGIN_TIMEOUT = 900.0


@dataclass(frozen=True, slots=True)
class OAuthConfig:
    issuer: str = "https://auth.openai.com"
    client_id: str = "app_EMoamEEZ73f0CkXaXp7hrann"
    redirect_uri: str = "http://localhost:1455/auth/callback"
    originator: str = "headway"
    #: Sent on every sign-in and refresh request (instead of httpx's own ``python-httpx/…``).
    user_agent: str = f"headway/{__version__}"
    scope: str = "openid profile email offline_access"
    http_timeout: float = 30.0

    @property
    def base(self) -> str:
        return self.issuer.rstrip("/")

    @property
    def authorize_endpoint(self) -> str:
        return f"{self.base}/oauth/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base}/oauth/token"

    @property
    def device_usercode_endpoint(self) -> str:
        return f"{self.base}/api/accounts/deviceauth/usercode"

    @property
    def device_token_endpoint(self) -> str:
        return f"{self.base}/api/accounts/deviceauth/token"

    @property
    def device_verification_url(self) -> str:
        return f"{self.base}/codex/device"

    @property
    def device_redirect_uri(self) -> str:
        return f"{self.base}/deviceauth/callback"


def authorize_url(cfg: OAuthConfig, pkce: Pkce, state: str) -> str:
    """The browser URL that starts a login; the issuer redirects to `cfg.redirect_uri` with `code` and `state`."""
    params = {
        "response_type": "code",
        "client_id": cfg.client_id,
        "redirect_uri": cfg.redirect_uri,
        "scope": cfg.scope,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "id_token_add_organizations": "true",
        "codex_cli_simplified_flow": "true",
        "state": state,
        "originator": cfg.originator,
    }
    return f"{cfg.authorize_endpoint}?{urlencode(params, quote_via=quote)}"


# -- the token endpoint ---------------------------------------------------------------------------------------


async def _post(
    client: httpx.AsyncClient,
    cfg: OAuthConfig,
    url: str,
    what: str,
    *,
    form: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
) -> httpx.Response:
    try:
        return await client.post(
            url,
            data=form,
            json=body,
            headers={"Accept": "application/json", "User-Agent": cfg.user_agent},
            timeout=cfg.http_timeout,
        )
    except httpx.TimeoutException as exc:
        raise TransientAuthError(f"{what} timed out") from exc
    except httpx.HTTPError as exc:
        raise TransientAuthError(f"{what} failed ({type(exc).__name__})") from exc


def _retry_after(response: httpx.Response) -> float | None:
    return retry_after_seconds(response.headers, time.time())


def _error_details(response: httpx.Response) -> tuple[list[str], str | None]:
    """Error codes and description from an OAuth error body (`{"error": "invalid_grant", ...}`) or an OpenAI one
    (`{"error": {"code": "refresh_token_reused", "message": ...}}`)."""
    try:
        body = response.json()
    except ValueError:
        return [], None
    if not isinstance(body, dict):
        return [], None
    error = body.get("error")
    if isinstance(error, Mapping):
        candidates = [error.get("code"), error.get("type")]
        description = nonempty_str(error.get("message"))
    else:
        candidates = [error]
        description = nonempty_str(body.get("error_description"))
    candidates += [body.get("code"), body.get("error_code")]
    codes: list[str] = []
    for candidate in candidates:
        code = nonempty_str(candidate)
        if code and code not in codes:
            codes.append(code)
    return codes, description


def _failure(response: httpx.Response, what: str) -> OAuthError:
    """Transient for 408, 429, 5xx and anything odd; permanent for the other 4xx (a refused grant or request)."""
    status = response.status_code
    codes, description = _error_details(response)
    detail = f"HTTP {status}" + (f": {', '.join(codes)}" if codes else "")
    if description:
        detail += f" - {description[:200]}"
    detail = redact(detail)  # the issuer's text is stored (health, status) and shown; it may echo a token
    if 400 <= status < 500 and status not in (408, 429):
        return PermanentAuthError(f"{what} was refused ({detail})")
    return TransientAuthError(f"{what} failed ({detail})", retry_after=_retry_after(response))


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    if not response.is_success:
        raise _failure(response, what)
    try:
        payload = response.json()
    except ValueError as exc:
        raise TransientAuthError(f"{what}: the answer is not JSON") from exc
    if not isinstance(payload, dict):
        raise TransientAuthError(f"{what}: the answer is not a JSON object")
    return payload


async def exchange_code(
    client: httpx.AsyncClient,
    cfg: OAuthConfig,
    code: str,
    verifier: str,
    redirect_uri: str | None = None,
    *,
    now: float | None = None,
) -> TokenSet:
    """Trade an authorization code (plus its PKCE verifier) for tokens: form POST to `/oauth/token`."""
    started = time.time() if now is None else now
    response = await _post(
        client,
        cfg,
        cfg.token_endpoint,
        "code exchange",
        form={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri or cfg.redirect_uri,
            "client_id": cfg.client_id,
            "code_verifier": verifier,
        },
    )
    return TokenSet.from_token_response(_json_object(response, "code exchange"), now=started)


async def refresh(
    client: httpx.AsyncClient,
    cfg: OAuthConfig,
    refresh_token: str,
    *,
    previous: TokenSet | None = None,
    now: float | None = None,
) -> TokenSet:
    """Refresh (JSON POST to `/oauth/token`). Refresh tokens rotate: store the result before using it.

    What the answer omits (refresh token, id token, identity) is kept from `previous`, or the refresh token sent.
    """
    started = time.time() if now is None else now
    response = await _post(
        client,
        cfg,
        cfg.token_endpoint,
        "token refresh",
        body={
            "client_id": cfg.client_id,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "scope": REFRESH_SCOPE,
        },
    )
    payload = _json_object(response, "token refresh")
    if previous is None and nonempty_str(payload.get("refresh_token")) is None:
        payload["refresh_token"] = refresh_token  # not rotated: the one we sent stays valid
    return TokenSet.from_token_response(payload, now=started, previous=previous)


# -- device code ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """Show the user `verification_url` and `user_code`, then `poll_device_flow`."""

    device_auth_id: str = field(repr=False)
    user_code: str
    interval: float
    verification_url: str


async def start_device_flow(client: httpx.AsyncClient, cfg: OAuthConfig) -> DeviceCode:
    response = await _post(
        client, cfg, cfg.device_usercode_endpoint, "device login", body={"client_id": cfg.client_id}
    )
    if response.status_code == 404:
        raise DeviceCodeUnavailable(
            "device-code login is not enabled for this account; use the browser login"
        )
    payload = _json_object(response, "device login")
    device_auth_id = nonempty_str(payload.get("device_auth_id"))
    user_code = nonempty_str(payload.get("user_code")) or nonempty_str(payload.get("usercode"))
    if device_auth_id is None or user_code is None:
        raise OAuthError("device login: the answer lacks device_auth_id or user_code")
    interval = as_number(payload.get("interval"))
    return DeviceCode(
        device_auth_id=device_auth_id,
        user_code=user_code,
        interval=5.0 if interval is None else max(1.0, interval),
        verification_url=cfg.device_verification_url,
    )


async def poll_device_flow(
    client: httpx.AsyncClient,
    cfg: OAuthConfig,
    code: DeviceCode,
    *,
    timeout: float = DEVICE_LOGIN_TIMEOUT,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> TokenSet:
    """Poll every `code.interval` until the user approves (403/404 mean pending), then exchange the code.

    Bounded by `timeout`, counted both in wall-clock time and in the sum of the sleeps (so a fake `sleep` in tests
    still ends the loop). Transient failures keep polling; a refusal ends it.
    """
    started = time.monotonic()
    slept = 0.0
    request = {"device_auth_id": code.device_auth_id, "user_code": code.user_code}
    while True:
        try:
            response: httpx.Response | None = await _post(
                client, cfg, cfg.device_token_endpoint, "device login", body=request
            )
        except TransientAuthError as exc:
            log.info("device login poll failed (%s); polling on", exc)
            response = None
        if response is not None and response.is_success:
            return await _finish_device_login(client, cfg, _json_object(response, "device login"))
        if response is not None and response.status_code not in (403, 404):
            failure = _failure(response, "device login")
            if not isinstance(failure, TransientAuthError):
                raise failure
            log.info("device login poll failed (%s); polling on", failure)
        elapsed = max(slept, time.monotonic() - started)
        if elapsed >= timeout:
            raise LoginTimeout(f"the device login was not approved within {timeout:.0f} s")
        pause = min(code.interval, timeout - elapsed)
        await sleep(pause)
        slept += pause


async def _finish_device_login(
    client: httpx.AsyncClient, cfg: OAuthConfig, payload: Mapping[str, Any]
) -> TokenSet:
    authorization_code = nonempty_str(payload.get("authorization_code"))
    verifier = nonempty_str(payload.get("code_verifier"))
    if authorization_code is None or verifier is None:
        raise OAuthError("device login: the answer lacks authorization_code or code_verifier")
    return await exchange_code(client, cfg, authorization_code, verifier, cfg.device_redirect_uri)
