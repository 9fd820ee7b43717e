"""Fixtures shared by the proxy.auth tests: the fake issuer, its config, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from proxy.auth.issuer import OAuthConfig
from tests.fakes.openai_auth import FakeOpenAIAuth


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
