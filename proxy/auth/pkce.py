"""PKCE (RFC 7636, S256), the login's `state`, and reading a JWT's claims.

Hand-written on purpose: each is a few lines of the standard library, exact to the spec, and a JOSE/OAuth dependency
would bring far more than these need (we never verify a signature; see ``decode_jwt_claims``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from proxy.auth.errors import OAuthError

__all__ = ["Pkce", "decode_jwt_claims", "new_pkce", "new_state"]


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
