"""Upstream base URLs in one normal form, from env, settings and per-account overrides."""

from __future__ import annotations

import pytest

from proxy.config.settings import Account, Settings, UpstreamSettings, effective_upstreams
from proxy.providers.anthropic import AnthropicApiKey
from proxy.providers.base import Incoming
from proxy.providers.chatgpt import ChatGPTAccount
from proxy.providers.openai import OpenAIApiKey
from proxy.wire.upstream_url import normalize_base_url


@pytest.mark.parametrize(
    ("name", "url", "expected"),
    [
        ("anthropic", "https://api.anthropic.com", "https://api.anthropic.com"),
        ("anthropic", "https://api.anthropic.com/", "https://api.anthropic.com"),
        ("anthropic", "https://api.anthropic.com/v1/", "https://api.anthropic.com"),
        ("openai", "https://api.openai.com/v1", "https://api.openai.com"),
        ("openai", "https://proxy.corp/openai/v1//", "https://proxy.corp/openai"),
        ("chatgpt", "https://chatgpt.com/backend-api", "https://chatgpt.com"),
        ("chatgpt", "https://chatgpt.com/backend-api/", "https://chatgpt.com"),
        ("chatgpt", "https://chatgpt.com/backend-api/codex", "https://chatgpt.com"),
        ("chatgpt", "https://proxy.corp/chatgpt/", "https://proxy.corp/chatgpt"),
        ("openai_auth", "https://auth.openai.com/", "https://auth.openai.com"),
        ("openai_auth", "https://auth.openai.com/oauth/token", "https://auth.openai.com"),
    ],
)
def test_normal_form(name: str, url: str, expected: str) -> None:
    assert normalize_base_url(url, name) == expected  # type: ignore[arg-type]
    assert normalize_base_url(expected, name) == expected  # type: ignore[arg-type]


def test_effective_upstreams_normalise_env_and_settings() -> None:
    settings = Settings(
        upstreams=UpstreamSettings(anthropic="https://a.example/v1/", chatgpt="https://c.example/backend-api")
    )
    env = {
        "HEADWAY_OPENAI_BASE_URL": "https://o.example/v1",
        "HEADWAY_OPENAI_AUTH_URL": "https://auth.example/",
    }
    up = effective_upstreams(settings, env)
    assert (up.anthropic, up.openai, up.chatgpt, up.openai_auth) == (
        "https://a.example",
        "https://o.example",
        "https://c.example",
        "https://auth.example",
    )
    env = {"HEADWAY_CHATGPT_BASE_URL": "http://127.0.0.1:9/backend-api/"}
    assert effective_upstreams(Settings(), env).chatgpt == "http://127.0.0.1:9"


def _incoming(path: str, protocol: str = "openai-responses") -> Incoming:
    return Incoming(
        method="POST",
        path=path,
        query="",
        headers={},
        body=b"{}",
        json={"model": "m", "input": "hi"},
        protocol=protocol,
        family="anthropic" if protocol == "anthropic" else "openai",  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("base", ["https://x.example/v1", "https://x.example/v1/", "https://x.example/"])
def test_account_base_urls_are_normalised_too(base: str) -> None:
    up = UpstreamSettings()
    anthropic = Account(id="a", kind="anthropic-api-key", label="a", base_url=base)
    assert (
        AnthropicApiKey().build(_incoming("/v1/messages", "anthropic"), anthropic, "k", up, Settings()).url
        == "https://x.example/v1/messages"
    )
    openai = Account(id="o", kind="openai-api-key", label="o", base_url=base)
    assert (
        OpenAIApiKey().build(_incoming("/v1/responses"), openai, "k", up, Settings()).url
        == "https://x.example/v1/responses"
    )


@pytest.mark.parametrize(
    "base", ["https://c.example/backend-api", "https://c.example/backend-api/", "https://c.example/"]
)
def test_chatgpt_account_base_url(base: str) -> None:
    account = Account(id="c", kind="chatgpt", label="c", base_url=base)
    out = ChatGPTAccount().build(_incoming("/v1/responses"), account, "tok", UpstreamSettings(), Settings())
    assert out.url == "https://c.example/backend-api/codex/responses"
