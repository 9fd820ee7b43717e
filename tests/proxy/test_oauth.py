"""proxy.oauth against FakeOpenAIAuth over real HTTP: PKCE login, device login, refresh orchestration."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import html
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from proxy.oauth import (
    DeviceCodeUnavailable,
    LoginTimeout,
    OAuthConfig,
    OAuthError,
    PermanentAuthError,
    TokenManager,
    TokenSet,
    TransientAuthError,
    authorize_url,
    decode_jwt_claims,
    exchange_code,
    new_pkce,
    new_state,
    poll_device_flow,
    refresh,
    start_device_flow,
)
from tests.fakes.openai_auth import AUTH_CLAIMS, FakeOpenAIAuth, fake_jwt
from tests.fakes.server import Behavior

ACCOUNT = "acct-fake-0001"


@pytest.fixture
def auth() -> Iterator[FakeOpenAIAuth]:
    with FakeOpenAIAuth() as fake:
        yield fake


@pytest.fixture
def cfg(auth: FakeOpenAIAuth) -> OAuthConfig:
    return OAuthConfig(issuer=auth.url)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


class Store:
    """The keychain stand-in: one JSON TokenSet per account id, with a log of saves."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.saves: list[tuple[str, str]] = []
        self.fail_saves = 0
        self.on_save: Callable[[str, str], None] | None = None

    def load(self, account_id: str) -> str | None:
        return self.data.get(account_id)

    def save(self, account_id: str, text: str) -> None:
        if self.on_save is not None:
            self.on_save(account_id, text)
        if self.fail_saves:
            self.fail_saves -= 1
            raise OSError("keychain is locked")
        self.data[account_id] = text
        self.saves.append((account_id, text))

    def tokens(self, account_id: str = ACCOUNT) -> TokenSet:
        return TokenSet.from_json(self.data[account_id])


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def manager(store: Store, client: httpx.AsyncClient, cfg: OAuthConfig, clock: Clock) -> TokenManager:
    return TokenManager(store.load, store.save, client, cfg, refresh_margin=300, clock=clock)


def seed(auth: FakeOpenAIAuth, store: Store, *, expires_in: float, account_id: str = ACCOUNT) -> TokenSet:
    """A live login in the store whose access token expires in `expires_in` seconds."""
    tokens = TokenSet.from_token_response(auth.issue_tokens(), now=time.time())
    tokens = dataclasses.replace(tokens, expires_at=time.time() + expires_in)
    store.data[account_id] = tokens.to_json()
    return tokens


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- PKCE and the authorize URL ------------------------------------------------------------------------------


def test_pkce_is_s256_over_a_64_byte_verifier_and_state_is_32_bytes() -> None:
    pkce, other = new_pkce(), new_pkce()
    assert len(pkce.verifier) == 86 and re.fullmatch(r"[A-Za-z0-9_-]+", pkce.verifier)
    assert pkce.challenge == b64url(hashlib.sha256(pkce.verifier.encode()).digest())
    assert pkce.verifier != other.verifier
    assert pkce.verifier not in repr(pkce)
    state = new_state()
    assert len(state) == 43 and re.fullmatch(r"[A-Za-z0-9_-]+", state)


def test_authorize_url_carries_the_codex_parameters() -> None:
    cfg = OAuthConfig(issuer="https://auth.example.test/")
    pkce = new_pkce()
    url = authorize_url(cfg, pkce, "st4te")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://auth.example.test/oauth/authorize"
    assert "+" not in parts.query  # spaces in the scope are %20
    assert {key: values[0] for key, values in parse_qs(parts.query).items()} == {
        "response_type": "code",
        "client_id": "app_EMoamEEZ73f0CkXaXp7hrann",
        "redirect_uri": "http://localhost:1455/auth/callback",
        "scope": "openid profile email offline_access",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "id_token_add_organizations": "true",
        "codex_cli_simplified_flow": "true",
        "state": "st4te",
        "originator": "headway",
    }


# -- browser login ---------------------------------------------------------------------------------------------


async def test_browser_login_page_then_code_exchange(
    auth: FakeOpenAIAuth, cfg: OAuthConfig, client: httpx.AsyncClient
) -> None:
    auth.next_login("acct-browser", plan_type="pro", email="pro@example.com")
    pkce, state = new_pkce(), new_state()
    page = await client.get(authorize_url(cfg, pkce, state))
    assert page.status_code == 200
    link = re.search(r"id='continue'[^>]*href='([^']+)'", page.text)
    assert link is not None
    callback = urlsplit(html.unescape(link.group(1)))
    assert f"http://{callback.netloc}{callback.path}" == cfg.redirect_uri
    query = {key: values[0] for key, values in parse_qs(callback.query).items()}
    assert query["state"] == state

    before = time.time()
    tokens = await exchange_code(client, cfg, query["code"], pkce.verifier)
    assert (tokens.account_id, tokens.plan_type, tokens.email) == ("acct-browser", "pro", "pro@example.com")
    assert before + 3590 <= tokens.expires_at <= time.time() + 3600
    assert tokens.id_token is not None
    assert auth.refresh_token_state(tokens.refresh_token) == "active"
    assert auth.access_token_valid(tokens.access_token)
    assert tokens.access_token not in repr(tokens) and tokens.refresh_token not in repr(tokens)


async def test_auto_redirect_knob_answers_302_to_the_callback(
    auth: FakeOpenAIAuth, cfg: OAuthConfig, client: httpx.AsyncClient
) -> None:
    auth.auto_redirect = True
    pkce = new_pkce()
    response = await client.get(authorize_url(cfg, pkce, "s1"))
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    code = parse_qs(location.query)["code"][0]
    tokens = await exchange_code(client, cfg, code, pkce.verifier)
    assert tokens.account_id == ACCOUNT


async def test_code_exchange_with_the_wrong_verifier_is_refused(
    auth: FakeOpenAIAuth, cfg: OAuthConfig, client: httpx.AsyncClient
) -> None:
    auth.auto_redirect = True
    response = await client.get(authorize_url(cfg, new_pkce(), "s1"))
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    wrong = new_pkce().verifier
    with pytest.raises(PermanentAuthError, match="invalid_grant") as caught:
        await exchange_code(client, cfg, code, wrong)
    assert wrong not in str(caught.value) and code not in str(caught.value)


async def test_unreachable_issuer_is_transient(client: httpx.AsyncClient) -> None:
    with FakeOpenAIAuth() as gone:
        cfg = OAuthConfig(issuer=gone.url)
    with pytest.raises(TransientAuthError, match="ConnectError"):
        await refresh(client, cfg, "rt_whatever")


# -- identity from the id token -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "account_id"),
    [
        (
            {
                AUTH_CLAIMS: {"chatgpt_account_id": "acct-ns"},
                "chatgpt_account_id": "acct-top",
                "organizations": [{"id": "org-1"}],
            },
            "acct-ns",
        ),
        ({"chatgpt_account_id": "acct-top", "organizations": [{"id": "org-1"}]}, "acct-top"),
        ({"organizations": [{"id": "org-1"}, {"id": "org-2"}]}, "org-1"),
        ({"email": "nobody@example.com"}, None),
    ],
    ids=["claim-namespace", "top-level", "first-organization", "none"],
)
def test_account_id_from_the_id_token(claims: dict[str, Any], account_id: str | None) -> None:
    payload = {
        "access_token": "opaque",
        "refresh_token": "rt",
        "id_token": fake_jwt(claims),
        "expires_in": 60,
    }
    tokens = TokenSet.from_token_response(payload, now=1000.0)
    assert tokens.account_id == account_id
    assert tokens.expires_at == 1060.0


def test_plan_and_email_from_the_claim_namespace() -> None:
    id_token = fake_jwt(
        {AUTH_CLAIMS: {"chatgpt_account_id": "a", "chatgpt_plan_type": "team"}, "email": "t@example.com"}
    )
    access_token = fake_jwt({"exp": 5000})
    tokens = TokenSet.from_token_response(
        {"access_token": access_token, "refresh_token": "rt", "id_token": id_token}, now=1000.0
    )
    assert (tokens.plan_type, tokens.email) == ("team", "t@example.com")
    assert tokens.expires_at == 5000.0  # the access token's exp when there is no expires_in
    both = TokenSet.from_token_response(
        {"access_token": access_token, "refresh_token": "rt", "expires_in": 100}, now=1000.0
    )
    assert both.expires_at == 1100.0  # the earlier of the two


def test_decode_jwt_claims_reads_the_payload_and_refuses_non_jwts() -> None:
    assert decode_jwt_claims(fake_jwt({"sub": "u", "exp": 1}))["sub"] == "u"
    for bad in ("opaque-token", "a.!!!.c", f"a.{b64url(b'[1]')}.c"):
        with pytest.raises(OAuthError):
            decode_jwt_claims(bad)


def test_token_set_json_round_trip_and_malformed_json() -> None:
    tokens = TokenSet("at", "rt", None, 123.5, "acct", "plus", "e@example.com")
    assert TokenSet.from_json(tokens.to_json()) == tokens
    for bad in ("not json", "[]", '{"access_token": "at"}'):
        with pytest.raises(OAuthError):
            TokenSet.from_json(bad)


# -- refresh ---------------------------------------------------------------------------------------------------


async def test_refresh_rotates_and_keeps_what_the_answer_omits(
    auth: FakeOpenAIAuth, cfg: OAuthConfig, client: httpx.AsyncClient
) -> None:
    first = TokenSet.from_token_response(auth.issue_tokens(), now=time.time())
    second = await refresh(client, cfg, first.refresh_token, previous=first)
    assert second.refresh_token != first.refresh_token
    assert auth.refresh_token_state(first.refresh_token) == "used"
    assert second.account_id == ACCOUNT

    auth.omit_on_refresh = {"refresh_token", "id_token"}
    third = await refresh(client, cfg, second.refresh_token, previous=second)
    assert third.refresh_token == second.refresh_token
    assert third.id_token == second.id_token and third.account_id == ACCOUNT
    assert third.access_token != second.access_token


async def test_refresh_of_a_reused_token_is_permanent(
    auth: FakeOpenAIAuth, cfg: OAuthConfig, client: httpx.AsyncClient
) -> None:
    first = TokenSet.from_token_response(auth.issue_tokens(), now=time.time())
    await refresh(client, cfg, first.refresh_token)
    with pytest.raises(PermanentAuthError, match="refresh_token_reused") as caught:
        await refresh(client, cfg, first.refresh_token)
    assert first.refresh_token not in str(caught.value)


async def test_refresh_429_is_transient_with_retry_after(
    auth: FakeOpenAIAuth, cfg: OAuthConfig, client: httpx.AsyncClient
) -> None:
    first = TokenSet.from_token_response(auth.issue_tokens(), now=time.time())
    auth.fail_next_refreshes(1, "rate_limited", retry_after=42)
    with pytest.raises(TransientAuthError) as caught:
        await refresh(client, cfg, first.refresh_token)
    assert caught.value.retry_after == 42.0
    assert auth.refresh_token_state(first.refresh_token) == "active"


# -- TokenManager ------------------------------------------------------------------------------------------


async def test_rotated_tokens_are_saved_before_the_access_token_is_returned(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager
) -> None:
    old = seed(auth, store, expires_in=60)
    returned = False
    seen_at_save: list[tuple[bool, str, str]] = []

    def check(account_id: str, text: str) -> None:
        saved = TokenSet.from_json(text)
        seen_at_save.append(
            (
                returned,
                auth.refresh_token_state(saved.refresh_token),
                auth.refresh_token_state(old.refresh_token),
            )
        )

    store.on_save = check
    access = await manager.access_token(ACCOUNT)
    returned = True
    assert seen_at_save == [(False, "active", "used")]
    saved = store.tokens()
    assert saved.access_token == access != old.access_token
    assert saved.refresh_token != old.refresh_token
    assert manager.status(ACCOUNT).state == "ok"


async def test_concurrent_callers_share_one_refresh(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager
) -> None:
    old = seed(auth, store, expires_in=60)
    auth.enqueue(Behavior(first_byte_delay=0.1))  # keep the refresh in flight while the others pile up
    results = await asyncio.gather(*(manager.access_token(ACCOUNT) for _ in range(20)))
    assert auth.refresh_calls == 1
    assert len(set(results)) == 1
    assert results[0] != old.access_token
    assert results[0] == store.tokens().access_token
    assert len(store.saves) == 1


async def test_fresh_token_needs_no_refresh_and_is_cached(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager
) -> None:
    tokens = seed(auth, store, expires_in=3000)
    assert await manager.access_token(ACCOUNT) == tokens.access_token
    del store.data[ACCOUNT]  # served from memory now
    assert await manager.access_token(ACCOUNT) == tokens.access_token
    assert (await manager.token_set(ACCOUNT)).account_id == ACCOUNT
    assert auth.refresh_calls == 0


async def test_store_is_re_read_before_refreshing(
    auth: FakeOpenAIAuth,
    store: Store,
    manager: TokenManager,
    clock: Clock,
    client: httpx.AsyncClient,
    cfg: OAuthConfig,
) -> None:
    old = seed(auth, store, expires_in=400)
    assert await manager.access_token(ACCOUNT) == old.access_token  # cached, not yet due
    rotated = await refresh(client, cfg, old.refresh_token, previous=old)  # another process refreshes
    store.data[ACCOUNT] = rotated.to_json()
    clock.offset = 200  # our cached copy is now inside the margin; the stored one is not
    assert await manager.access_token(ACCOUNT) == rotated.access_token
    assert auth.refresh_calls == 1  # only the other process's
    assert store.saves == []


@pytest.mark.parametrize(
    ("kind", "code"), [("invalid_grant", "invalid_grant"), ("token_expired", "refresh_token_expired")]
)
async def test_refused_refresh_marks_needs_login_and_keeps_the_store(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager, kind: Any, code: str
) -> None:
    seed(auth, store, expires_in=60)
    before = dict(store.data)
    auth.fail_next_refreshes(1, kind)
    with pytest.raises(PermanentAuthError, match=code):
        await manager.access_token(ACCOUNT)
    status = manager.status(ACCOUNT)
    assert status.state == "needs_login" and status.last_error is not None and code in status.last_error
    with pytest.raises(PermanentAuthError):
        await manager.access_token(ACCOUNT)
    assert auth.refresh_calls == 1  # no retry against a dead grant
    assert store.data == before and store.saves == []

    new_login = TokenSet.from_token_response(auth.issue_tokens(), now=time.time())
    store.data[ACCOUNT] = new_login.to_json()
    manager.mark_logged_in(ACCOUNT, new_login)
    assert manager.status(ACCOUNT).state == "ok"
    assert await manager.access_token(ACCOUNT) == new_login.access_token


async def test_reused_refresh_token_needs_login_until_the_rotated_one_lands(
    auth: FakeOpenAIAuth,
    store: Store,
    manager: TokenManager,
    client: httpx.AsyncClient,
    cfg: OAuthConfig,
) -> None:
    old = seed(auth, store, expires_in=60)
    rotated = await refresh(client, cfg, old.refresh_token, previous=old)  # another process, not yet saved
    with pytest.raises(PermanentAuthError, match="refresh_token_reused"):
        await manager.access_token(ACCOUNT)
    assert manager.status(ACCOUNT).state == "needs_login"
    assert store.tokens().refresh_token == old.refresh_token and store.saves == []

    store.data[ACCOUNT] = rotated.to_json()  # the other process's save lands: a different refresh token
    assert await manager.access_token(ACCOUNT) == rotated.access_token
    assert manager.status(ACCOUNT).state == "ok"
    assert auth.refresh_calls == 2


async def test_transient_failure_backs_off_serves_the_valid_token_then_recovers(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager, clock: Clock
) -> None:
    old = seed(auth, store, expires_in=120)
    auth.fail_next_refreshes(1, "server_error")
    assert await manager.access_token(ACCOUNT) == old.access_token
    status = manager.status(ACCOUNT)
    assert status.state == "refresh_failing"
    assert status.last_error is not None and "HTTP 500" in status.last_error
    assert status.retry_at is not None and 4 <= status.retry_at - clock() <= 5
    assert await manager.access_token(ACCOUNT) == old.access_token  # still backing off: no new request
    assert auth.refresh_calls == 1
    assert store.tokens() == old and store.saves == []

    clock.offset = 6
    new = await manager.access_token(ACCOUNT)
    assert new != old.access_token and new == store.tokens().access_token
    assert auth.refresh_calls == 2
    assert manager.status(ACCOUNT).state == "ok"


async def test_backoff_honours_retry_after(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager, clock: Clock
) -> None:
    old = seed(auth, store, expires_in=200)
    auth.fail_next_refreshes(1, "rate_limited", retry_after=60)
    assert await manager.access_token(ACCOUNT) == old.access_token
    clock.offset = 30
    assert await manager.access_token(ACCOUNT) == old.access_token
    assert auth.refresh_calls == 1
    clock.offset = 61
    assert await manager.access_token(ACCOUNT) != old.access_token
    assert auth.refresh_calls == 2


async def test_exponential_backoff_grows_and_is_capped(
    auth: FakeOpenAIAuth, store: Store, client: httpx.AsyncClient, cfg: OAuthConfig, clock: Clock
) -> None:
    manager = TokenManager(store.load, store.save, client, cfg, clock=clock, backoff_base=10, backoff_cap=25)
    seed(auth, store, expires_in=1000)
    auth.fail_next_refreshes(3, "server_error")
    delays = []
    for _ in range(3):
        await manager.refresh_due([ACCOUNT], margin=2000)
        retry_at = manager.status(ACCOUNT).retry_at
        assert retry_at is not None
        delays.append(round(retry_at - clock()))
        clock.offset += delays[-1] + 1
    assert delays == [10, 20, 25]
    assert auth.refresh_calls == 3


async def test_expired_token_with_a_transient_failure_raises_with_retry_after(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager
) -> None:
    seed(auth, store, expires_in=-10)
    before = dict(store.data)
    auth.fail_next_refreshes(1, "rate_limited", retry_after=30)
    with pytest.raises(TransientAuthError) as caught:
        await manager.access_token(ACCOUNT)
    assert caught.value.retry_after is not None and 29 <= caught.value.retry_after <= 30
    with pytest.raises(TransientAuthError):  # backing off: answered from memory
        await manager.access_token(ACCOUNT)
    assert auth.refresh_calls == 1
    assert store.data == before


async def test_failed_save_keeps_the_rotated_tokens_and_retries_the_save(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager, clock: Clock
) -> None:
    old = seed(auth, store, expires_in=100)
    store.fail_saves = 1
    assert await manager.access_token(ACCOUNT) == old.access_token  # not the unsaved new one
    status = manager.status(ACCOUNT)
    assert status.state == "refresh_failing"
    assert status.last_error is not None and "could not store" in status.last_error
    assert store.tokens() == old

    clock.offset = 10
    new = await manager.access_token(ACCOUNT)
    assert new != old.access_token
    assert auth.refresh_calls == 1  # the rotated set was kept, not refreshed again
    saved = store.tokens()
    assert saved.access_token == new and auth.refresh_token_state(saved.refresh_token) == "active"


async def test_a_cancelled_caller_does_not_abort_the_refresh(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager
) -> None:
    old = seed(auth, store, expires_in=60)
    auth.enqueue(Behavior(first_byte_delay=0.3))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(manager.access_token(ACCOUNT), 0.05)
    await manager.aclose(5.0)
    saved = store.tokens()
    assert saved.refresh_token != old.refresh_token
    assert auth.refresh_token_state(saved.refresh_token) == "active"
    assert await manager.access_token(ACCOUNT) == saved.access_token
    assert auth.refresh_calls == 1


async def test_missing_or_unreadable_store_needs_login(store: Store, manager: TokenManager) -> None:
    with pytest.raises(PermanentAuthError, match="no stored login"):
        await manager.access_token("acct-missing")
    store.data["acct-garbled"] = "{not json"
    with pytest.raises(PermanentAuthError, match="unreadable"):
        await manager.access_token("acct-garbled")
    assert manager.status("acct-garbled").state == "needs_login"
    assert store.data["acct-garbled"] == "{not json"
    assert manager.status("acct-never-seen").state == "ok"


async def test_refresh_due_refreshes_only_what_is_due(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager
) -> None:
    due = seed(auth, store, expires_in=100, account_id="acct-due")
    fresh = seed(auth, store, expires_in=3000, account_id="acct-fresh")
    results = await manager.refresh_due(["acct-due", "acct-fresh", "acct-gone"])
    assert {key: value.state for key, value in results.items()} == {
        "acct-due": "ok",
        "acct-fresh": "ok",
        "acct-gone": "needs_login",
    }
    assert auth.refresh_calls == 1
    assert store.tokens("acct-due").refresh_token != due.refresh_token
    assert store.tokens("acct-fresh") == fresh


# -- device code -------------------------------------------------------------------------------------------


async def test_device_login_end_to_end(
    auth: FakeOpenAIAuth, cfg: OAuthConfig, client: httpx.AsyncClient
) -> None:
    auth.next_login("acct-device", plan_type="pro")
    code = await start_device_flow(client, cfg)
    assert code.verification_url == f"{auth.url}/codex/device"
    assert code.interval == 1.0 and code.user_code
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            auth.approve_device(code.user_code)

    tokens = await poll_device_flow(client, cfg, code, sleep=fake_sleep)
    assert auth.device_polls == 3  # pending, pending, approved
    assert sleeps == [1.0, 1.0]
    assert (tokens.account_id, tokens.plan_type) == ("acct-device", "pro")
    assert auth.refresh_token_state(tokens.refresh_token) == "active"


async def test_device_login_not_enabled(
    auth: FakeOpenAIAuth, cfg: OAuthConfig, client: httpx.AsyncClient
) -> None:
    auth.device_code_enabled = False
    with pytest.raises(DeviceCodeUnavailable):
        await start_device_flow(client, cfg)


async def test_device_login_gives_up_after_the_timeout(
    auth: FakeOpenAIAuth, cfg: OAuthConfig, client: httpx.AsyncClient
) -> None:
    code = await start_device_flow(client, cfg)
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    with pytest.raises(LoginTimeout):
        await poll_device_flow(client, cfg, code, timeout=3, sleep=fake_sleep)
    assert sum(sleeps) == 3.0
    assert auth.device_polls == 4


@pytest.mark.parametrize("status", [400, 500])
async def test_an_issuer_error_echoing_the_refresh_token_is_redacted(status: int) -> None:
    """The issuer's error text becomes a health reason and a status line: it must not carry the token it echoes."""
    token = "rt_" + "S3cr3tRefresh" * 4

    def issuer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": "invalid_grant", "error_description": f"refresh_token={token} is not valid: {token}"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(issuer)) as client:
        with pytest.raises(OAuthError) as caught:
            await refresh(client, OAuthConfig(issuer="https://auth.example"), token)
    assert "invalid_grant" in str(caught.value)
    assert "S3cr3tRefreshS3cr3t" not in str(caught.value)
