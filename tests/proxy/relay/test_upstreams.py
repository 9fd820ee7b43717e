"""The relay's upstream allowlist on Headway's side: origins parsed the way the Worker's `URL.origin` does."""

from __future__ import annotations

import pytest

from proxy.config.settings import Account, Settings, SettingsError
from proxy.relay.upstreams import allowlist_drift, origin_of, relay_origins


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://api.anthropic.com/v1/messages", "https://api.anthropic.com"),
        ("HTTPS://API.Anthropic.COM:443/v1", "https://api.anthropic.com"),
        ("http://127.0.0.1:8080/x?y=1", "http://127.0.0.1:8080"),
        ("http://proxy.corp:80/chatgpt", "http://proxy.corp"),
        ("http://[::1]:9000/v1", "http://[::1]:9000"),
        ("https://api.anthropic.com@evil.example/v1", None),  # user info: the host is after the @
        ("https://user:pw@api.anthropic.com/v1", None),
        ("ftp://api.anthropic.com/", None),
        ("not a url", None),
        ("", None),
    ],
)
def test_origin_of(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


def test_relay_origins_take_overrides_and_accounts_own_bases() -> None:
    settings = Settings(
        accounts=[
            Account(
                id="a1", kind="anthropic-api-key", label="Corp", base_url="https://llm.corp.example/anthropic"
            ),
            Account(id="a2", kind="anthropic-api-key", label="Plain"),
        ]
    )
    settings.upstreams.chatgpt = "https://chatgpt.proxy.example/backend-api"
    environ = {"HEADWAY_ANTHROPIC_BASE_URL": "http://127.0.0.1:4100/v1"}
    assert relay_origins(settings, environ) == [
        "http://127.0.0.1:4100",
        "https://api.openai.com",
        "https://chatgpt.proxy.example",
        "https://llm.corp.example",
    ]
    assert relay_origins(Settings(), {}) == [
        "https://api.anthropic.com",
        "https://api.openai.com",
        "https://chatgpt.com",
    ]


def test_a_bad_override_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="HEADWAY_OPENAI_BASE_URL"):
        relay_origins(Settings(), {"HEADWAY_OPENAI_BASE_URL": "not-a-url"})


def test_drift() -> None:
    wanted = ["https://api.anthropic.com", "https://api.openai.com"]
    same = allowlist_drift(["https://api.openai.com/", "https://API.anthropic.com"], wanted)
    assert not same.out_of_date and same.message() is None
    new = allowlist_drift(["https://api.anthropic.com"], wanted)
    assert new.out_of_date and new.missing == ["https://api.openai.com"]
    assert "missing https://api.openai.com" in (new.message() or "")
    legacy = allowlist_drift(None, wanted)
    assert legacy.out_of_date and "predates the upstream allowlist" in (legacy.message() or "")
