"""proxy.auth.token_set: identity from the id token, the keychain JSON form."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.auth.errors import (
    OAuthError,
)
from proxy.auth.token_set import TokenSet
from tests.fakes.openai_auth import AUTH_CLAIMS, fake_jwt

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


def test_token_set_json_round_trip_and_malformed_json() -> None:
    tokens = TokenSet("at", "rt", None, 123.5, "acct", "plus", "e@example.com")
    assert TokenSet.from_json(tokens.to_json()) == tokens
    for bad in ("not json", "[]", '{"access_token": "at"}'):
        with pytest.raises(OAuthError):
            TokenSet.from_json(bad)
