"""FakeOpenAIAuth's own behaviour, spoken to with plain HTTP (no proxy code)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.fakes.openai_auth import AUTH_CLAIMS, CODEX_CLIENT_ID, FakeOpenAIAuth, s256

VERIFIER = "v" * 64
REDIRECT = "http://localhost:1455/auth/callback"


@pytest.fixture
def auth() -> Iterator[FakeOpenAIAuth]:
    with FakeOpenAIAuth() as fake:
        yield fake


@pytest.fixture
def http(auth: FakeOpenAIAuth) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=auth.url, timeout=5.0) as client:
        yield client


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def authorize_params(**overrides: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": CODEX_CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "openid profile email offline_access",
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
        "state": "st",
    }
    params.update(overrides)
    return {key: value for key, value in params.items() if value}


def login_code(auth: FakeOpenAIAuth, http: httpx.Client) -> str:
    auth.auto_redirect = True
    response = http.get("/oauth/authorize", params=authorize_params())
    assert response.status_code == 302
    return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]


def exchange(
    http: httpx.Client, code: str, verifier: str = VERIFIER, redirect_uri: str = REDIRECT
) -> httpx.Response:
    return http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": CODEX_CLIENT_ID,
            "code_verifier": verifier,
        },
    )


def refresh(http: httpx.Client, token: str, *, as_form: bool = False) -> httpx.Response:
    body = {
        "client_id": CODEX_CLIENT_ID,
        "grant_type": "refresh_token",
        "refresh_token": token,
        "scope": "openid",
    }
    return http.post("/oauth/token", data=body) if as_form else http.post("/oauth/token", json=body)


def test_authorize_page_links_to_the_callback_with_code_and_state(
    auth: FakeOpenAIAuth, http: httpx.Client
) -> None:
    auth.next_login("acct-page", email="page@example.com")
    response = http.get(
        "/oauth/authorize", params=authorize_params(redirect_uri="http://localhost:5555/auth/callback")
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "page@example.com" in response.text
    assert "id='continue'" in response.text
    assert "href='http://localhost:5555/auth/callback?code=ac_" in response.text
    assert "state=st'" in response.text


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"client_id": "app_other"}, "unknown client_id"),
        ({"redirect_uri": "http://127.0.0.1:1455/auth/callback"}, "redirect_uri"),
        ({"redirect_uri": "https://evil.example/auth/callback"}, "redirect_uri"),
        ({"code_challenge_method": "plain"}, "S256"),
        ({"code_challenge": ""}, "code_challenge is missing"),
        ({"state": ""}, "state is missing"),
        ({"response_type": "token"}, "response_type"),
    ],
)
def test_authorize_refuses_bad_requests(http: httpx.Client, override: dict[str, str], problem: str) -> None:
    response = http.get("/oauth/authorize", params=authorize_params(**override))
    assert response.status_code == 400
    assert problem in response.text


def test_login_error_knob_redirects_with_the_error(auth: FakeOpenAIAuth, http: httpx.Client) -> None:
    auth.login_error = "access_denied"
    response = http.get("/oauth/authorize", params=authorize_params())
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["location"]).query) == {
        "error": ["access_denied"],
        "state": ["st"],
    }


def test_code_exchange_issues_jwts_with_the_account_claims(auth: FakeOpenAIAuth, http: httpx.Client) -> None:
    auth.access_token_ttl = 600
    auth.next_login("acct-x", plan_type="pro", email="x@example.com")
    before = time.time()
    response = exchange(http, login_code(auth, http))
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 600 and body["refresh_token"].startswith("rt_")
    access, identity = claims(body["access_token"]), claims(body["id_token"])
    assert before + 598 <= access["exp"] <= time.time() + 600
    assert identity[AUTH_CLAIMS]["chatgpt_account_id"] == "acct-x"
    assert identity[AUTH_CLAIMS]["chatgpt_plan_type"] == "pro"
    assert identity[AUTH_CLAIMS]["organizations"][0]["id"] == "org-acct-x"
    assert identity["email"] == "x@example.com"
    assert auth.access_token_valid(body["access_token"])
    assert auth.code_exchanges == 1


def test_pkce_mismatch_is_refused_and_the_code_is_single_use(
    auth: FakeOpenAIAuth, http: httpx.Client
) -> None:
    code = login_code(auth, http)
    wrong = exchange(http, code, verifier="w" * 64)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant" and "PKCE" in wrong.json()["error_description"]
    assert exchange(http, code).status_code == 400  # burnt by the failed attempt

    other = login_code(auth, http)
    assert exchange(http, other, redirect_uri="http://localhost:9/auth/callback").status_code == 400


def test_unknown_client_is_refused(auth: FakeOpenAIAuth, http: httpx.Client) -> None:
    token = auth.issue_tokens()["refresh_token"]
    response = http.post(
        "/oauth/token", json={"client_id": "app_other", "grant_type": "refresh_token", "refresh_token": token}
    )
    assert response.status_code == 401
    assert auth.refresh_token_state(token) == "active"


@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
def test_refresh_rotates_and_the_old_token_is_reused_invalid_grant(
    auth: FakeOpenAIAuth, http: httpx.Client, as_form: bool
) -> None:
    first = auth.issue_tokens()["refresh_token"]
    response = refresh(http, first, as_form=as_form)
    assert response.status_code == 200
    second = response.json()["refresh_token"]
    assert second != first
    assert (auth.refresh_token_state(first), auth.refresh_token_state(second)) == ("used", "active")

    reused = refresh(http, first, as_form=as_form)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert reused.json()["error_code"] == "refresh_token_reused"
    assert refresh(http, second).status_code == 200
    assert auth.refresh_calls == 3


def test_omitted_refresh_token_keeps_the_old_one_alive(auth: FakeOpenAIAuth, http: httpx.Client) -> None:
    auth.omit_on_refresh = {"refresh_token", "id_token"}
    token = auth.issue_tokens()["refresh_token"]
    body = refresh(http, token).json()
    assert "refresh_token" not in body and "id_token" not in body and "access_token" in body
    assert refresh(http, token).status_code == 200


def test_failure_knobs_answer_in_order_and_keep_the_token(auth: FakeOpenAIAuth, http: httpx.Client) -> None:
    token = auth.issue_tokens()["refresh_token"]
    auth.fail_next_refreshes(1, "server_error")
    auth.fail_next_refreshes(1, "rate_limited", retry_after=7)
    auth.fail_next_refreshes(1, "invalid_grant")
    auth.fail_next_refreshes(1, "token_expired")
    answers = [refresh(http, token) for _ in range(5)]
    assert [answer.status_code for answer in answers] == [500, 429, 400, 401, 200]
    assert answers[1].headers["retry-after"] == "7"
    assert answers[2].json()["error"] == "invalid_grant"
    assert answers[3].json()["error"]["code"] == "refresh_token_expired"
    assert auth.refresh_calls == 5


def test_revoked_and_unknown_refresh_tokens_are_invalid_grant(
    auth: FakeOpenAIAuth, http: httpx.Client
) -> None:
    token = auth.issue_tokens()["refresh_token"]
    assert http.post("/oauth/revoke", data={"token": token}).status_code == 200
    assert auth.refresh_token_state(token) == "revoked"
    revoked = refresh(http, token)
    assert (revoked.status_code, revoked.json()["error_code"]) == (400, "refresh_token_invalidated")
    assert refresh(http, "rt_never_issued").json()["error"] == "invalid_grant"


def test_device_code_pending_until_approved_then_exchangeable(
    auth: FakeOpenAIAuth, http: httpx.Client
) -> None:
    start = http.post("/api/accounts/deviceauth/usercode", json={"client_id": CODEX_CLIENT_ID})
    assert start.status_code == 200
    device = start.json()
    assert device["interval"] == "1"
    poll = {"device_auth_id": device["device_auth_id"], "user_code": device["user_code"]}
    assert http.post("/api/accounts/deviceauth/token", json=poll).status_code == 403

    auth.approve_device(device["user_code"])
    approved = http.post("/api/accounts/deviceauth/token", json=poll)
    assert approved.status_code == 200
    grant = approved.json()
    assert grant["code_challenge"] == s256(grant["code_verifier"])
    assert http.post("/api/accounts/deviceauth/token", json=poll).status_code == 400  # used up
    tokens = exchange(
        http, grant["authorization_code"], grant["code_verifier"], f"{auth.url}/deviceauth/callback"
    )
    assert tokens.status_code == 200
    assert auth.device_polls == 3


def test_device_page_approves_a_typed_code(auth: FakeOpenAIAuth, http: httpx.Client) -> None:
    device = http.post("/api/accounts/deviceauth/usercode", json={"client_id": CODEX_CLIENT_ID}).json()
    assert "name='user_code'" in http.get("/codex/device").text
    assert http.post("/codex/device", data={"user_code": "NOPE-0000"}).status_code == 400
    form = urlencode({"user_code": device["user_code"].lower()})
    page = http.post(
        "/codex/device", content=form, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert page.status_code == 200
    poll = {"device_auth_id": device["device_auth_id"], "user_code": device["user_code"]}
    assert http.post("/api/accounts/deviceauth/token", json=poll).status_code == 200
    with pytest.raises(KeyError):
        auth.approve_device("NOPE-0000")


def test_device_code_disabled_is_404(auth: FakeOpenAIAuth, http: httpx.Client) -> None:
    auth.device_code_enabled = False
    assert (
        http.post("/api/accounts/deviceauth/usercode", json={"client_id": CODEX_CLIENT_ID}).status_code == 404
    )


def test_stop_is_bounded_and_frees_the_port() -> None:
    fake = FakeOpenAIAuth().start()
    url = fake.url
    with httpx.Client(timeout=2.0) as client:
        assert client.get(f"{url}/codex/device").status_code == 200
        started = time.monotonic()
        fake.stop(timeout=2.0)
        assert time.monotonic() - started < 2.0
        with pytest.raises(httpx.ConnectError):
            client.get(f"{url}/codex/device")
