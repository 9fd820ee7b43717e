"""One ChatGPT account's tokens (`TokenSet`): the issuer's token answer, the keychain's JSON form, and the
account identity (account id, plan, email) read from the id token's claims."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.auth.errors import OAuthError, TransientAuthError
from proxy.auth.pkce import decode_jwt_claims
from proxy.wire.retry_after import as_number

__all__ = ["AUTH_CLAIMS", "PROFILE_CLAIMS", "TokenSet", "nonempty_str"]

AUTH_CLAIMS = "https://api.openai.com/auth"
PROFILE_CLAIMS = "https://api.openai.com/profile"
# Only used when the issuer gives neither `expires_in` nor a JWT `exp`; real access tokens always carry `exp`.
FALLBACK_ACCESS_TTL = 3600.0


def _claims_or_empty(token: str | None) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return decode_jwt_claims(token)
    except OAuthError:
        return {}


def nonempty_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _first_org_id(claims: Mapping[str, Any]) -> str | None:
    for orgs in (claims.get("organizations"), _mapping(claims.get(AUTH_CLAIMS)).get("organizations")):
        if isinstance(orgs, list) and orgs and isinstance(orgs[0], Mapping):
            found = nonempty_str(orgs[0].get("id"))
            if found:
                return found
    return None


def _identity(claims: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(account id, plan type, email) from id-token claims, with the fallbacks seen in the wild."""
    auth = _mapping(claims.get(AUTH_CLAIMS))
    account_id = (
        nonempty_str(auth.get("chatgpt_account_id"))
        or nonempty_str(claims.get("chatgpt_account_id"))
        or _first_org_id(claims)
    )
    plan_type = nonempty_str(auth.get("chatgpt_plan_type")) or nonempty_str(claims.get("chatgpt_plan_type"))
    email = nonempty_str(claims.get("email")) or nonempty_str(
        _mapping(claims.get(PROFILE_CLAIMS)).get("email")
    )
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
        access, refresh_token = (
            nonempty_str(data.get("access_token")),
            nonempty_str(data.get("refresh_token")),
        )
        expires_at = as_number(data.get("expires_at"))
        if access is None or refresh_token is None or expires_at is None:
            raise OAuthError("stored token set lacks access_token, refresh_token or expires_at")
        return cls(
            access_token=access,
            refresh_token=refresh_token,
            id_token=nonempty_str(data.get("id_token")),
            expires_at=expires_at,
            account_id=nonempty_str(data.get("account_id")),
            plan_type=nonempty_str(data.get("plan_type")),
            email=nonempty_str(data.get("email")),
        )

    @classmethod
    def from_token_response(
        cls, payload: Mapping[str, Any], *, now: float, previous: TokenSet | None = None
    ) -> TokenSet:
        """Build from an `/oauth/token` answer; on refresh, what the answer omits is kept from `previous`."""
        access = nonempty_str(payload.get("access_token"))
        refresh_token = nonempty_str(payload.get("refresh_token")) or (
            previous.refresh_token if previous else None
        )
        if access is None or refresh_token is None:
            raise TransientAuthError("token response lacks access_token or refresh_token")
        id_token = nonempty_str(payload.get("id_token")) or (previous.id_token if previous else None)
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
