"""proxy.auth.pkce: PKCE, state, JWT claims."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from proxy.auth.errors import (
    OAuthError,
)
from proxy.auth.pkce import decode_jwt_claims, new_pkce, new_state
from tests.fakes.openai_auth import fake_jwt


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


def test_decode_jwt_claims_reads_the_payload_and_refuses_non_jwts() -> None:
    assert decode_jwt_claims(fake_jwt({"sub": "u", "exp": 1}))["sub"] == "u"
    for bad in ("opaque-token", "a.!!!.c", f"a.{b64url(b'[1]')}.c"):
        with pytest.raises(OAuthError):
            decode_jwt_claims(bad)
