"""Signing in with a ChatGPT subscription (OAuth PKCE or device code) and keeping its tokens fresh.

The protocol is the Codex CLI's, described in ``shared/reference/chatgpt-codex.md``; every URL hangs off
``OAuthConfig.issuer`` so tests (and ``HEADWAY_OPENAI_AUTH_URL``, read by the caller) can point it elsewhere.

This module talks HTTP through the ``httpx.AsyncClient`` it is given and stores nothing itself: ``TokenManager``
reads and writes token sets through two callables (the keychain, in the app).

Errors, all raised from here with httpx's exceptions translated::

    OAuthError                    base
    ├── PermanentAuthError        the grant is dead (invalid_grant; refresh token reused, revoked or expired):
    │                             the account needs a new login
    ├── TransientAuthError        network error, timeout, 408, 429, 5xx, keychain hiccup: try later (retry_after)
    ├── DeviceCodeUnavailable     device-code login is not enabled for this account (404 on usercode)
    └── LoginTimeout              the user did not finish a login in time

Messages carry HTTP statuses and the issuer's error codes, never a token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlencode

import httpx

from . import __version__
from .logs import redact
from .retry_after import as_number, retry_after_seconds
from .tasks import TaskGroup

__all__ = [
    "AuthState",
    "AuthStatus",
    "DeviceCode",
    "DeviceCodeUnavailable",
    "LoginTimeout",
    "OAuthConfig",
    "OAuthError",
    "PermanentAuthError",
    "Pkce",
    "TokenManager",
    "TokenSet",
    "TransientAuthError",
    "authorize_url",
    "decode_jwt_claims",
    "exchange_code",
    "new_pkce",
    "new_state",
    "poll_device_flow",
    "refresh",
    "start_device_flow",
]

log = logging.getLogger("headway.oauth")

AUTH_CLAIMS = "https://api.openai.com/auth"
PROFILE_CLAIMS = "https://api.openai.com/profile"
REFRESH_SCOPE = "openid profile email"
# Only used when the issuer gives neither `expires_in` nor a JWT `exp`; real access tokens always carry `exp`.
FALLBACK_ACCESS_TTL = 3600.0
DEVICE_LOGIN_TIMEOUT = 900.0

# Error codes the issuer uses for a refresh token that will never work again.
_DEAD_GRANT_CODES = frozenset(
    {
        "invalid_grant",
        "refresh_token_reused",
        "refresh_token_expired",
        "refresh_token_invalidated",
        "refresh_token_revoked",
    }
)


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


# -- configuration and PKCE ---------------------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class Pkce:
    verifier: str = field(repr=False)
    challenge: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_pkce() -> Pkce:
    """A fresh S256 PKCE pair: the verifier is 64 random bytes, base64url without padding."""
    verifier = _b64url(secrets.token_bytes(64))
    return Pkce(verifier=verifier, challenge=_b64url(hashlib.sha256(verifier.encode("ascii")).digest()))


def new_state() -> str:
    """A fresh `state` (32 random bytes, base64url) to check on the callback."""
    return _b64url(secrets.token_bytes(32))


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


# -- tokens -----------------------------------------------------------------------------------------------------


def decode_jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, WITHOUT verifying its signature.

    That is safe only because we read tokens we just received from the issuer over TLS (or stored ourselves), to
    learn their expiry and the account they belong to; never use this to authenticate anyone.
    """
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        raise OAuthError("not a JWT")
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except ValueError as exc:
        raise OAuthError("malformed JWT payload") from exc
    if not isinstance(claims, dict):
        raise OAuthError("JWT payload is not an object")
    return claims


def _claims_or_empty(token: str | None) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return decode_jwt_claims(token)
    except OAuthError:
        return {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _first_org_id(claims: Mapping[str, Any]) -> str | None:
    for orgs in (claims.get("organizations"), _mapping(claims.get(AUTH_CLAIMS)).get("organizations")):
        if isinstance(orgs, list) and orgs and isinstance(orgs[0], Mapping):
            found = _text(orgs[0].get("id"))
            if found:
                return found
    return None


def _identity(claims: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(account id, plan type, email) from id-token claims, with the fallbacks seen in the wild."""
    auth = _mapping(claims.get(AUTH_CLAIMS))
    account_id = (
        _text(auth.get("chatgpt_account_id"))
        or _text(claims.get("chatgpt_account_id"))
        or _first_org_id(claims)
    )
    plan_type = _text(auth.get("chatgpt_plan_type")) or _text(claims.get("chatgpt_plan_type"))
    email = _text(claims.get("email")) or _text(_mapping(claims.get(PROFILE_CLAIMS)).get("email"))
    return account_id, plan_type, email


@dataclass(frozen=True, slots=True)
class TokenSet:
    """One account's tokens. `expires_at` is the access token's expiry (epoch seconds); tokens stay out of repr."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    id_token: str | None = field(repr=False)
    expires_at: float
    account_id: str | None = None
    plan_type: str | None = None
    email: str | None = None

    def expires_within(self, seconds: float, now: float) -> bool:
        return self.expires_at - now <= seconds

    def to_json(self) -> str:
        """The keychain form (a JSON object string)."""
        return json.dumps(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "id_token": self.id_token,
                "expires_at": self.expires_at,
                "account_id": self.account_id,
                "plan_type": self.plan_type,
                "email": self.email,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> TokenSet:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise OAuthError("stored token set is not JSON") from exc
        if not isinstance(data, dict):
            raise OAuthError("stored token set is not a JSON object")
        access, refresh_token = _text(data.get("access_token")), _text(data.get("refresh_token"))
        expires_at = as_number(data.get("expires_at"))
        if access is None or refresh_token is None or expires_at is None:
            raise OAuthError("stored token set lacks access_token, refresh_token or expires_at")
        return cls(
            access_token=access,
            refresh_token=refresh_token,
            id_token=_text(data.get("id_token")),
            expires_at=expires_at,
            account_id=_text(data.get("account_id")),
            plan_type=_text(data.get("plan_type")),
            email=_text(data.get("email")),
        )

    @classmethod
    def from_token_response(
        cls, payload: Mapping[str, Any], *, now: float, previous: TokenSet | None = None
    ) -> TokenSet:
        """Build from an `/oauth/token` answer; on refresh, what the answer omits is kept from `previous`."""
        access = _text(payload.get("access_token"))
        refresh_token = _text(payload.get("refresh_token")) or (previous.refresh_token if previous else None)
        if access is None or refresh_token is None:
            raise TransientAuthError("token response lacks access_token or refresh_token")
        id_token = _text(payload.get("id_token")) or (previous.id_token if previous else None)
        expiries = [exp for exp in (as_number(_claims_or_empty(access).get("exp")),) if exp is not None]
        expires_in = as_number(payload.get("expires_in"))
        if expires_in is not None:
            expiries.append(now + expires_in)
        account_id, plan_type, email = _identity(_claims_or_empty(id_token))
        return cls(
            access_token=access,
            refresh_token=refresh_token,
            id_token=id_token,
            expires_at=min(expiries) if expiries else now + FALLBACK_ACCESS_TTL,
            account_id=account_id or (previous.account_id if previous else None),
            plan_type=plan_type or (previous.plan_type if previous else None),
            email=email or (previous.email if previous else None),
        )


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
        description = _text(error.get("message"))
    else:
        candidates = [error]
        description = _text(body.get("error_description"))
    candidates += [body.get("code"), body.get("error_code")]
    codes: list[str] = []
    for candidate in candidates:
        code = _text(candidate)
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
    if previous is None and _text(payload.get("refresh_token")) is None:
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
    device_auth_id = _text(payload.get("device_auth_id"))
    user_code = _text(payload.get("user_code")) or _text(payload.get("usercode"))
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
    authorization_code = _text(payload.get("authorization_code"))
    verifier = _text(payload.get("code_verifier"))
    if authorization_code is None or verifier is None:
        raise OAuthError("device login: the answer lacks authorization_code or code_verifier")
    return await exchange_code(client, cfg, authorization_code, verifier, cfg.device_redirect_uri)


# -- refresh orchestration ----------------------------------------------------------------------------------------

AuthState = Literal["ok", "needs_login", "refresh_failing"]


@dataclass(frozen=True, slots=True)
class AuthStatus:
    """One account's sign-in health. `retry_at` (epoch s) is when a failing refresh is tried next."""

    state: AuthState = "ok"
    last_error: str | None = None
    retry_at: float | None = None


@dataclass(slots=True, eq=False)
class _Account:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    state: AuthState = "ok"
    last_error: str | None = None
    failures: int = 0
    retry_at: float | None = None
    rejected: str | None = None  # sha256 of the refresh token the issuer refused
    cached: TokenSet | None = None
    unsaved: TokenSet | None = None  # rotated by us, not yet in the store (whose refresh token is now dead)
    inflight: asyncio.Task[TokenSet | OAuthError] | None = None


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenManager:
    """Valid access tokens for many ChatGPT accounts, refreshed ahead of expiry, one refresh per account at a time.

    `load(account_id)` and `save(account_id, token_set_json)` read and write the stored TokenSet (the keychain);
    they are synchronous, may block, and run in a worker thread. The manager never deletes a stored login and only
    ever saves a token set the issuer has just returned, before handing out its access token.

    A refresh runs in its own named task that callers await through `asyncio.shield`: a caller that gives up
    (a cancelled request) does not abort it, because the issuer may already have rotated the refresh token and
    the answer must still reach the store. Use one manager from one event loop.
    """

    def __init__(
        self,
        load: Callable[[str], str | None],
        save: Callable[[str, str], None],
        client: httpx.AsyncClient,
        cfg: OAuthConfig,
        *,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.time,
        backoff_base: float = 5.0,
        backoff_cap: float = 600.0,
    ) -> None:
        self._load = load
        self._save = save
        self._client = client
        self._cfg = cfg
        self._margin = refresh_margin
        self._clock = clock
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._accounts: dict[str, _Account] = {}
        self._tasks = TaskGroup()

    async def access_token(self, account_id: str) -> str:
        """A valid access token; raises PermanentAuthError (needs login) or TransientAuthError (try later)."""
        return (await self.token_set(account_id)).access_token

    async def token_set(self, account_id: str) -> TokenSet:
        """Like `access_token`, with the account id and plan that go with it."""
        return await self._valid(account_id, self._margin)

    def status(self, account_id: str) -> AuthStatus:
        account = self._accounts.get(account_id)
        if account is None:
            return AuthStatus()
        return AuthStatus(account.state, account.last_error, account.retry_at)

    async def refresh_due(
        self, account_ids: Iterable[str], *, margin: float | None = None
    ) -> dict[str, AuthStatus]:
        """Refresh, one after another, the accounts whose token expires within `margin` (default: the refresh
        margin). For a background loop: failures are recorded in `status()` and returned, not raised."""
        results: dict[str, AuthStatus] = {}
        for account_id in account_ids:
            try:
                await self._valid(account_id, self._margin if margin is None else margin)
            except OAuthError as exc:
                log.debug("account %s: background refresh: %s", account_id, exc)
            results[account_id] = self.status(account_id)
        return results

    def mark_logged_in(self, account_id: str, tokens: TokenSet | None = None) -> None:
        """Clear needs_login / refresh_failing after a new login was saved; `tokens` (what was saved) primes the
        cache, otherwise the store is read on next use."""
        account = self._account(account_id)
        self._recovered(account)
        account.unsaved = None
        account.cached = tokens

    def forget(self, account_id: str) -> None:
        """Drop what is held in memory for an account (it was removed). The store is the caller's business."""
        self._accounts.pop(account_id, None)

    async def aclose(self, grace: float = 10.0) -> None:
        """Let in-flight refreshes finish (bounded by `grace`, then cancelled) so a rotated token is not lost."""
        inflight = [account.inflight for account in self._accounts.values() if account.inflight is not None]
        if inflight:
            await asyncio.wait(inflight, timeout=grace)
        await self._tasks.close(1.0)

    # -- internals ----------------------------------------------------------------------------------------------

    def _account(self, account_id: str) -> _Account:
        account = self._accounts.get(account_id)
        if account is None:
            account = self._accounts[account_id] = _Account()
        return account

    async def _valid(self, account_id: str, margin: float) -> TokenSet:
        account = self._account(account_id)
        ready = self._ready(account, margin)
        if ready is not None:
            return ready
        async with account.lock:
            ready = self._ready(account, margin)
            if ready is not None:
                return ready
            task = account.inflight
            if task is None:
                task = self._tasks.spawn(
                    self._cycle(account_id, account, margin), name=f"headway-token-refresh:{account_id}"
                )
                account.inflight = task
                task.add_done_callback(lambda done: self._settled(account, done))
            result = await asyncio.shield(task)
        if isinstance(result, OAuthError):
            raise result
        return result

    @staticmethod
    def _settled(account: _Account, task: asyncio.Task[TokenSet | OAuthError]) -> None:
        if account.inflight is task:
            account.inflight = None

    def _ready(self, account: _Account, margin: float) -> TokenSet | None:
        """The cached token when neither a store read nor a refresh is needed; raises while backing off with no
        valid token to offer."""
        if account.state == "needs_login":
            return None  # the store may hold a new login: the cycle re-reads it
        now = self._clock()
        cached = account.cached
        if cached is not None and not cached.expires_within(margin, now):
            return cached
        if account.retry_at is not None and now < account.retry_at:
            if cached is not None and cached.expires_at > now:
                return cached
            raise TransientAuthError(
                account.last_error or "token refresh is backing off", retry_after=account.retry_at - now
            )
        return None

    async def _cycle(self, account_id: str, account: _Account, margin: float) -> TokenSet | OAuthError:
        # Returned, not raised: every waiter re-raises it, and the task group does not log it as a crash.
        try:
            return await self._refresh_if_due(account_id, account, margin)
        except OAuthError as exc:
            return exc

    async def _refresh_if_due(self, account_id: str, account: _Account, margin: float) -> TokenSet:
        try:
            stored = await self._read(account_id)
        except TransientAuthError as exc:
            if account.cached is None or account.state == "needs_login":
                self._failed(account_id, account, exc)
                raise
            return self._fall_back(account_id, account, account.cached, exc)
        except PermanentAuthError as exc:
            raise self._needs_login(account_id, account, None, str(exc)) from exc

        if account.state == "needs_login":
            if stored is None or _fingerprint(stored.refresh_token) == account.rejected:
                raise PermanentAuthError(account.last_error or "this account needs a new login")
            log.info("account %s: a new login was stored; using it", account_id)
            self._recovered(account)

        if account.unsaved is not None:
            unsaved = account.unsaved
            try:
                await self._write(account_id, unsaved)
            except TransientAuthError as exc:
                if stored is None:
                    self._failed(account_id, account, exc)
                    raise
                return self._fall_back(account_id, account, stored, exc)
            account.unsaved = None
            stored = unsaved

        if stored is None:
            raise self._needs_login(account_id, account, None, "no stored login for this account")

        now = self._clock()
        if not stored.expires_within(margin, now):
            account.cached = stored  # fresh already: someone (another process) refreshed it
            self._recovered(account)
            return stored

        try:
            fresh = await refresh(self._client, self._cfg, stored.refresh_token, previous=stored, now=now)
        except PermanentAuthError as exc:
            raise self._needs_login(account_id, account, stored.refresh_token, str(exc)) from exc
        except OAuthError as exc:
            return self._fall_back(account_id, account, stored, exc)

        account.unsaved = fresh
        try:
            await self._write(account_id, fresh)
        except TransientAuthError as exc:
            return self._fall_back(account_id, account, stored, exc)
        account.unsaved = None
        account.cached = fresh
        self._recovered(account)
        return fresh

    async def _read(self, account_id: str) -> TokenSet | None:
        try:
            text = await asyncio.to_thread(self._load, account_id)
        except Exception as exc:
            raise TransientAuthError(f"could not read the stored login ({type(exc).__name__})") from exc
        if text is None:
            return None
        try:
            return TokenSet.from_json(text)
        except OAuthError as exc:
            raise PermanentAuthError(f"the stored login is unreadable ({exc})") from exc

    async def _write(self, account_id: str, tokens: TokenSet) -> None:
        try:
            await asyncio.to_thread(self._save, account_id, tokens.to_json())
        except Exception as exc:
            raise TransientAuthError(f"could not store the refreshed login ({type(exc).__name__})") from exc

    def _fall_back(self, account_id: str, account: _Account, current: TokenSet, exc: OAuthError) -> TokenSet:
        """After a transient failure: back off, and keep serving the current access token while it is valid."""
        self._failed(account_id, account, exc)
        account.cached = current
        now = self._clock()
        if current.expires_at > now:
            return current
        retry_at = account.retry_at if account.retry_at is not None else now
        raise TransientAuthError(str(exc), retry_after=max(0.0, retry_at - now)) from exc

    def _failed(self, account_id: str, account: _Account, exc: OAuthError) -> None:
        if account.state == "needs_login":
            return
        account.failures += 1
        retry_after = exc.retry_after if isinstance(exc, TransientAuthError) else None
        if retry_after is None:
            retry_after = self._backoff_base * 2.0 ** min(account.failures - 1, 30)
        delay = min(retry_after, self._backoff_cap)
        account.state = "refresh_failing"
        account.last_error = str(exc)
        account.retry_at = self._clock() + delay
        log.warning("account %s: token refresh failed (%s); next try in %.0f s", account_id, exc, delay)

    def _needs_login(
        self, account_id: str, account: _Account, refresh_token: str | None, message: str
    ) -> PermanentAuthError:
        account.state = "needs_login"
        account.last_error = message
        account.failures = 0
        account.retry_at = None
        account.rejected = _fingerprint(refresh_token) if refresh_token else None
        account.cached = None
        log.warning("account %s needs a new login: %s", account_id, message)
        return PermanentAuthError(message)

    @staticmethod
    def _recovered(account: _Account) -> None:
        account.state = "ok"
        account.last_error = None
        account.failures = 0
        account.retry_at = None
        account.rejected = None
