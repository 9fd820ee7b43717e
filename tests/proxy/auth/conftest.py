"""Fixtures shared by the proxy.auth tests: the fake issuer's config (the issuer is tests/conftest.py's ``auth``), an
HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from proxy.auth.issuer import OAuthConfig
from tests.fakes.openai_auth import FakeOpenAIAuth


@pytest.fixture
def cfg(auth: FakeOpenAIAuth) -> OAuthConfig:
    return OAuthConfig(issuer=auth.url)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http
