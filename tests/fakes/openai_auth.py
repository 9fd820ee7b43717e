"""A fake auth.openai.com for the ChatGPT sign-in: OAuth with PKCE, rotating refresh tokens, device code.

    with FakeOpenAIAuth() as auth:
        auth.next_login(account_id="acct-2", plan_type="pro", email="b@example.com")
        auth.fail_next_refreshes(1, "rate_limited", retry_after=30)
        cfg = OAuthConfig(issuer=auth.url)
        ...
        assert auth.refresh_calls == 2

Routes (after ``shared/reference/chatgpt-codex.md``):

    GET  /oauth/authorize                    checks client_id, redirect_uri, S256 challenge, state; answers a page
                                             whose "Continue" link goes to redirect_uri?code=…&state=… (a 302 right
                                             away when `auto_redirect`; redirect_uri?error=… when `login_error`)
    POST /oauth/token                        authorization_code (PKCE checked) or refresh_token (rotating: the old
                                             token dies; reusing it is 400 invalid_grant / refresh_token_reused);
                                             form or JSON bodies
    POST /oauth/revoke                       revokes a refresh token
    POST /api/accounts/deviceauth/usercode   {client_id} → {device_auth_id, user_code, interval: "1"}; 404 when
                                             `device_code_enabled` is False
    POST /api/accounts/deviceauth/token      403 until `approve_device(user_code)`, then {authorization_code,
                                             code_challenge, code_verifier} (exchanged with redirect_uri
                                             <url>/deviceauth/callback)
    GET  /codex/device, POST /codex/device   the page where a person types the code (the POST approves it)

Tokens are real-looking JWTs (random signature, never verified): the access token carries `exp`, the id token
the `https://api.openai.com/auth` claims (`chatgpt_account_id`, `chatgpt_plan_type`, organizations) and `email`.
Every request is recorded like the other fakes' (`requests`); scripted `Behavior`s (`enqueue`) apply to any route.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import html
import json
import re
import secrets
import string
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from tests.fakes.server import Exchange, FakeServer, RecordedRequest, Route

__all__ = [
    "AUTH_CLAIMS",
    "CODEX_CLIENT_ID",
    "FakeAccount",
    "FakeOpenAIAuth",
    "RefreshFailure",
    "fake_jwt",
    "s256",
]

CODEX_CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
AUTH_CLAIMS = "https://api.openai.com/auth"
PROFILE_CLAIMS = "https://api.openai.com/profile"

RefreshFailure = Literal["server_error", "rate_limited", "invalid_grant", "token_expired"]

_ERROR_TYPES = {400: "invalid_request", 401: "invalid_client", 404: "not_found", 429: "rate_limit_exceeded"}
_CODE_ALPHABET = "".join(c for c in string.ascii_uppercase if c not in "IO") + "23456789"


@dataclass(frozen=True)
class FakeAccount:
    """The ChatGPT account a login yields."""

    account_id: str = "acct-fake-0001"
    plan_type: str = "plus"
    email: str = "user@example.com"
    user_id: str = "user-fake-0001"
    org_id: str = "org-fake-0001"


@dataclass
class _Grant:
    challenge: str
    redirect_uri: str
    account: FakeAccount


@dataclass
class _RefreshToken:
    account: FakeAccount
    state: Literal["active", "used", "revoked"] = "active"


@dataclass
class _Device:
    device_auth_id: str
    user_code: str
    approved_for: FakeAccount | None = None
    consumed: bool = False


@dataclass(frozen=True)
class _Failure:
    kind: RefreshFailure
    retry_after: float


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def s256(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def fake_jwt(claims: Mapping[str, Any]) -> str:
    """header.payload.signature, base64url; the signature is random bytes (nobody verifies it)."""
    header = {"alg": "RS256", "typ": "JWT", "kid": "fake-key"}
    return ".".join(
        (
            _b64url(json.dumps(header, separators=(",", ":")).encode()),
            _b64url(json.dumps(dict(claims), separators=(",", ":")).encode()),
            _b64url(secrets.token_bytes(32)),
        )
    )


def _json_reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(payload, separators=(",", ":")).encode(), headers=headers or {})


def _oauth_error(status: int, error: str, description: str, **extra: str) -> _Reply:
    return _json_reply({"error": error, "error_description": description, **extra}, status)


def _page(title: str, body_html: str, status: int = 200) -> _Reply:
    document = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{body_html}</body></html>"
    )
    return _Reply(status, document.encode(), "text/html; charset=utf-8")


class FakeOpenAIAuth(FakeServer):
    """The issuer. Knobs are plain attributes (set them any time) plus the methods below.

    `client_id`             the only client id accepted (the Codex CLI's by default)
    `redirect_uri_pattern`  regex a browser-login redirect_uri must fully match (localhost, any port)
    `access_token_ttl`      seconds until an issued access token's `exp` (and `expires_in`)
    `auto_redirect`         authorize answers 302 to the callback at once instead of the "Continue" page
    `login_error`           authorize redirects with ?error=<this> (the user refused, say)
    `device_code_enabled`   False: the usercode endpoint answers 404
    `device_interval`       the poll interval handed out (a string, like the real one)
    `omit_on_refresh`       keys left out of refresh answers ("refresh_token": then the old one stays valid,
                            "id_token", "expires_in")
    """

    thread_name = "fake-openai-auth"

    def __init__(
        self,
        *,
        client_id: str = CODEX_CLIENT_ID,
        access_token_ttl: float = 3600.0,
        clock: Callable[[], float] = time.time,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.client_id = client_id
        self.redirect_uri_pattern = r"http://localhost:\d+/auth/callback"
        self.access_token_ttl = access_token_ttl
        self.auto_redirect = False
        self.login_error: str | None = None
        self.device_code_enabled = True
        self.device_interval = "1"
        self.omit_on_refresh: set[str] = set()
        self.account = FakeAccount()
        self._clock = clock
        self._codes: dict[str, _Grant] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._access_tokens: dict[str, float] = {}
        self._devices: dict[str, _Device] = {}
        self._failures: collections.deque[_Failure] = collections.deque()
        self._refresh_calls = 0
        self._code_exchanges = 0
        self._device_polls = 0

    # -- knobs ------------------------------------------------------------------------------------------------

    def next_login(
        self,
        account_id: str | None = None,
        *,
        plan_type: str | None = None,
        email: str | None = None,
        user_id: str | None = None,
        org_id: str | None = None,
    ) -> FakeAccount:
        """Which account the next logins (browser or device) yield; unspecified fields keep their value."""
        current = self.account
        account_id = account_id or current.account_id
        changed = account_id != current.account_id
        self.account = FakeAccount(
            account_id=account_id,
            plan_type=plan_type or current.plan_type,
            email=email or current.email,
            user_id=user_id or (f"user-{account_id}" if changed else current.user_id),
            org_id=org_id or (f"org-{account_id}" if changed else current.org_id),
        )
        return self.account

    def fail_next_refreshes(self, count: int, kind: RefreshFailure, *, retry_after: float = 1.0) -> None:
        """The next `count` refresh requests fail (the refresh token stays valid):

        server_error  500 {"error": "server_error"}
        rate_limited  429 with Retry-After: `retry_after`
        invalid_grant 400 {"error": "invalid_grant"}
        token_expired 401 {"error": {"code": "refresh_token_expired", ...}} (OpenAI's nested shape)
        """
        with self._lock:
            self._failures.extend(_Failure(kind, retry_after) for _ in range(count))

    def approve_device(self, user_code: str, account: FakeAccount | None = None) -> None:
        """The person approved this device code (as `account`, default the next-login account)."""
        with self._lock:
            for device in self._devices.values():
                if device.user_code == user_code.strip().upper():
                    device.approved_for = account or self.account
                    return
        raise KeyError(user_code)

    def revoke(self, refresh_token: str) -> None:
        with self._lock:
            self._refresh_tokens[refresh_token].state = "revoked"

    def issue_tokens(self, account: FakeAccount | None = None) -> dict[str, Any]:
        """A token answer as if a login had just happened (the refresh token is live), without the HTTP dance."""
        return self._mint(account or self.account)

    # -- observations -----------------------------------------------------------------------------------------

    @property
    def refresh_calls(self) -> int:
        """Refresh-grant requests received, failed ones included."""
        with self._lock:
            return self._refresh_calls

    @property
    def code_exchanges(self) -> int:
        with self._lock:
            return self._code_exchanges

    @property
    def device_polls(self) -> int:
        with self._lock:
            return self._device_polls

    def refresh_token_state(self, refresh_token: str) -> str:
        """ "active", "used" (rotated away), "revoked" or "unknown"."""
        with self._lock:
            record = self._refresh_tokens.get(refresh_token)
            return record.state if record else "unknown"

    def access_token_valid(self, access_token: str) -> bool:
        """Issued here and not yet past its `exp` (a fake backend can check bearer tokens with this)."""
        with self._lock:
            exp = self._access_tokens.get(access_token)
        return exp is not None and exp > self._clock()

    # -- FakeServer hooks -------------------------------------------------------------------------------------

    def routes(self) -> Mapping[tuple[str, str], Route]:
        return {
            ("GET", "/oauth/authorize"): self._route(self._authorize),
            ("POST", "/oauth/token"): self._route(self._token),
            ("POST", "/oauth/revoke"): self._route(self._revoke),
            ("POST", "/api/accounts/deviceauth/usercode"): self._route(self._device_usercode),
            ("POST", "/api/accounts/deviceauth/token"): self._route(self._device_token),
            ("GET", "/codex/device"): self._route(self._device_page),
            ("POST", "/codex/device"): self._route(self._device_page),
        }

    def error_body(self, status: int, error_type: str, message: str) -> dict[str, Any]:
        return {"error": error_type, "error_description": message}

    def default_error_type(self, status: int) -> str:
        return _ERROR_TYPES.get(status, "server_error")

    def api_key(self, request: RecordedRequest) -> str | None:
        return None

    # -- routes ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _route(handler: Callable[[RecordedRequest], _Reply]) -> Route:
        def route(exchange: Exchange) -> None:
            reply = handler(exchange.request)
            out = exchange.handler
            out.send_response(reply.status)
            out.send_header("Content-Type", reply.content_type)
            out.send_header("Content-Length", str(len(reply.body)))
            out.send_header("Cache-Control", "no-store")
            for name, value in reply.headers.items():
                out.send_header(name, value)
            out.end_headers()
            out.wfile.write(reply.body)
            out.wfile.flush()

        return route

    def _authorize(self, request: RecordedRequest) -> _Reply:
        q = request.query
        redirect_uri = q.get("redirect_uri", "")
        problems = [
            message
            for failed, message in (
                (q.get("client_id") != self.client_id, "unknown client_id"),
                (not re.fullmatch(self.redirect_uri_pattern, redirect_uri), "redirect_uri is not registered"),
                (q.get("response_type") != "code", "response_type must be code"),
                (not q.get("code_challenge"), "code_challenge is missing"),
                (q.get("code_challenge_method") != "S256", "code_challenge_method must be S256"),
                (not q.get("state"), "state is missing"),
                ("openid" not in q.get("scope", "").split(), "scope must include openid"),
            )
            if failed
        ]
        if problems:
            return _page("Authorization error", f"<p id='error'>{html.escape('; '.join(problems))}</p>", 400)
        state = q["state"]
        if self.login_error is not None:
            location = f"{redirect_uri}?{urlencode({'error': self.login_error, 'state': state})}"
            return _Reply(302, b"", "text/plain", {"Location": location})
        code = f"ac_{secrets.token_urlsafe(24)}"
        account = self.account
        with self._lock:
            self._codes[code] = _Grant(q["code_challenge"], redirect_uri, account)
        location = f"{redirect_uri}?{urlencode({'code': code, 'state': state})}"
        if self.auto_redirect:
            return _Reply(302, b"", "text/plain", {"Location": location})
        return _page(
            "Sign in to Codex",
            f"<p>Signing in as <span id='email'>{html.escape(account.email)}</span>"
            f" ({html.escape(account.plan_type)}).</p>"
            f"<p><a id='continue' role='button' href='{html.escape(location, quote=True)}'>Continue</a></p>",
        )

    def _token(self, request: RecordedRequest) -> _Reply:
        params = _params(request)
        if params.get("client_id") != self.client_id:
            return _oauth_error(401, "invalid_client", "Unknown client.")
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            return self._code_grant(params)
        if grant_type == "refresh_token":
            return self._refresh_grant(params)
        return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type {grant_type!r}.")

    def _code_grant(self, params: Mapping[str, str]) -> _Reply:
        with self._lock:
            self._code_exchanges += 1
            grant = self._codes.pop(params.get("code", ""), None)  # single use, even when the rest is wrong
        if grant is None:
            return _oauth_error(
                400, "invalid_grant", "The authorization code is invalid or was already used."
            )
        if params.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error(
                400, "invalid_grant", "redirect_uri does not match the authorization request."
            )
        verifier = params.get("code_verifier", "")
        if not verifier or not secrets.compare_digest(s256(verifier), grant.challenge):
            return _oauth_error(400, "invalid_grant", "PKCE verification failed.")
        return _json_reply(self._mint(grant.account))

    def _refresh_grant(self, params: Mapping[str, str]) -> _Reply:
        token = params.get("refresh_token", "")
        with self._lock:
            self._refresh_calls += 1
            failure = self._failures.popleft() if self._failures else None
            record = self._refresh_tokens.get(token)
            state = record.state if record else "unknown"
        if failure is not None:
            return _failure_reply(failure)
        if record is None:
            return _oauth_error(
                400, "invalid_grant", "Invalid refresh token.", error_code="refresh_token_invalid"
            )
        if state == "used":
            return _oauth_error(
                400,
                "invalid_grant",
                "The refresh token has already been used to generate a new access token. Please sign in again.",
                error_code="refresh_token_reused",
            )
        if state == "revoked":
            return _oauth_error(
                400, "invalid_grant", "The refresh token was revoked.", error_code="refresh_token_invalidated"
            )
        omit = set(self.omit_on_refresh)
        rotate = "refresh_token" not in omit
        with self._lock:
            if rotate and record.state == "active":
                record.state = "used"
            elif rotate:  # lost a race with a concurrent refresh of the same token
                return _oauth_error(
                    400, "invalid_grant", "Refresh token reused.", error_code="refresh_token_reused"
                )
        payload = self._mint(record.account, refresh_token=None if rotate else token)
        return _json_reply({key: value for key, value in payload.items() if key not in omit})

    def _revoke(self, request: RecordedRequest) -> _Reply:
        token = _params(request).get("token", "")
        with self._lock:
            record = self._refresh_tokens.get(token)
            if record is not None:
                record.state = "revoked"
        return _json_reply({})

    def _device_usercode(self, request: RecordedRequest) -> _Reply:
        if not self.device_code_enabled:
            return _json_reply(
                {"error": {"code": "not_found", "message": "Device login is not enabled."}}, 404
            )
        if _params(request).get("client_id") != self.client_id:
            return _oauth_error(401, "invalid_client", "Unknown client.")
        device = _Device(
            device_auth_id=f"deviceauth_{secrets.token_urlsafe(16)}",
            user_code="".join(secrets.choice(_CODE_ALPHABET) for _ in range(4))
            + "-"
            + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(5)),
        )
        with self._lock:
            self._devices[device.device_auth_id] = device
        return _json_reply(
            {
                "device_auth_id": device.device_auth_id,
                "user_code": device.user_code,
                "interval": self.device_interval,
            }
        )

    def _device_token(self, request: RecordedRequest) -> _Reply:
        params = _params(request)
        with self._lock:
            self._device_polls += 1
            device = self._devices.get(params.get("device_auth_id", ""))
            if device is None or device.user_code != params.get("user_code"):
                return _oauth_error(400, "invalid_request", "Unknown device_auth_id or user_code.")
            if device.consumed:
                return _oauth_error(400, "invalid_grant", "This device code was already used.")
            if device.approved_for is None:
                return _json_reply(
                    {
                        "error": {
                            "code": "deviceauth_authorization_pending",
                            "message": "Waiting for approval.",
                        }
                    },
                    403,
                )
            device.consumed = True
            verifier = _b64url(secrets.token_bytes(64))
            code = f"ac_{secrets.token_urlsafe(24)}"
            self._codes[code] = _Grant(s256(verifier), f"{self.url}/deviceauth/callback", device.approved_for)
        return _json_reply(
            {"authorization_code": code, "code_challenge": s256(verifier), "code_verifier": verifier}
        )

    def _device_page(self, request: RecordedRequest) -> _Reply:
        if request.method == "POST":
            user_code = _params(request).get("user_code", "")
            try:
                self.approve_device(user_code)
            except KeyError:
                return _page("Unknown code", "<p id='error'>That code is not valid.</p>", 400)
            return _page("Device approved", "<p id='done'>You can return to your terminal.</p>")
        return _page(
            "Enter your device code",
            "<form method='post' action='/codex/device'><input name='user_code' id='user_code'>"
            "<button id='continue' type='submit'>Continue</button></form>",
        )

    # -- tokens -----------------------------------------------------------------------------------------------

    def _mint(self, account: FakeAccount, *, refresh_token: str | None = None) -> dict[str, Any]:
        now = self._clock()
        exp = int(now + self.access_token_ttl)
        auth = {
            "chatgpt_account_id": account.account_id,
            "chatgpt_plan_type": account.plan_type,
            "chatgpt_user_id": account.user_id,
            "user_id": account.user_id,
        }
        access_token = fake_jwt(
            {
                "iss": self._issuer(),
                "aud": ["https://api.openai.com/v1"],
                "client_id": self.client_id,
                "sub": account.user_id,
                "iat": int(now),
                "nbf": int(now),
                "exp": exp,
                "jti": str(uuid.uuid4()),
                "scp": ["openid", "profile", "email", "offline_access"],
                AUTH_CLAIMS: auth,
                PROFILE_CLAIMS: {"email": account.email, "email_verified": True},
            }
        )
        id_token = fake_jwt(
            {
                "iss": self._issuer(),
                "aud": [self.client_id],
                "sub": account.user_id,
                "iat": int(now),
                "auth_time": int(now),
                "exp": int(now + 3600),
                "email": account.email,
                "email_verified": True,
                AUTH_CLAIMS: {
                    **auth,
                    "organizations": [
                        {"id": account.org_id, "is_default": True, "role": "owner", "title": "Personal"}
                    ],
                },
            }
        )
        new_refresh = refresh_token or f"rt_{secrets.token_urlsafe(32)}"
        with self._lock:
            self._access_tokens[access_token] = exp
            self._refresh_tokens.setdefault(new_refresh, _RefreshToken(account))
        return {
            "access_token": access_token,
            "id_token": id_token,
            "refresh_token": new_refresh,
            "token_type": "Bearer",
            "expires_in": int(self.access_token_ttl),
            "scope": "openid profile email offline_access",
        }

    def _issuer(self) -> str:
        try:
            return self.url
        except RuntimeError:
            return "https://auth.openai.com"


def _failure_reply(failure: _Failure) -> _Reply:
    if failure.kind == "server_error":
        return _oauth_error(500, "server_error", "The fake issuer is having a bad day.")
    if failure.kind == "rate_limited":
        reply = _oauth_error(429, "rate_limit_exceeded", "Too many requests.")
        reply.headers["Retry-After"] = f"{failure.retry_after:g}"
        return reply
    if failure.kind == "invalid_grant":
        return _oauth_error(400, "invalid_grant", "The refresh token is invalid.")
    return _json_reply(
        {
            "error": {
                "code": "refresh_token_expired",
                "message": "Your refresh token has expired. Please sign in again.",
                "type": "invalid_request_error",
            }
        },
        401,
    )


def _params(request: RecordedRequest) -> dict[str, str]:
    """The body's fields, JSON or form-encoded (the real endpoint takes both)."""
    if isinstance(request.json, dict):
        return {key: value for key, value in request.json.items() if isinstance(value, str)}
    return dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
