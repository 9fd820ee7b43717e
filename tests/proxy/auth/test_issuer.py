"""proxy.auth.issuer against FakeOpenAIAuth: authorize URL, code exchange, refresh, device code, redaction."""

from __future__ import annotations

import base64
import html
import re
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from proxy.auth.errors import (
    DeviceCodeUnavailable,
    LoginTimeout,
    OAuthError,
    PermanentAuthError,
    TransientAuthError,
)
from proxy.auth.issuer import (
    OAuthConfig,
    authorize_url,
    exchange_code,
    poll_device_flow,
    refresh,
    start_device_flow,
)
from proxy.auth.pkce import new_pkce, new_state
from proxy.auth.token_set import TokenSet
from tests.fakes.openai_auth import FakeOpenAIAuth

ACCOUNT = "acct-fake-0001"  # FakeOpenAIAuth's default account


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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
        return httpx.Response(
            status,
            json={
                "error": "invalid_grant",
                "error_description": f"refresh_token={token} is not valid: {token}",
            },
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(issuer)) as client:
        with pytest.raises(OAuthError) as caught:
            await refresh(client, OAuthConfig(issuer="https://auth.example"), token)
    assert "invalid_grant" in str(caught.value)
    assert "S3cr3tRefreshS3cr3t" not in str(caught.value)
