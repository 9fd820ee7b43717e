"""The adapter of every account kind, made once by whoever owns them (the engine)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from proxy.config.settings import Account, Settings
from proxy.features.base import Feature
from proxy.providers.anthropic import AnthropicApiKey
from proxy.providers.base import Incoming, ProviderAdapter
from proxy.providers.chatgpt import ChatGPTAccount
from proxy.providers.chatgpt.keepwarm import KeepWarm
from proxy.providers.openai import OpenAIApiKey

__all__ = ["build_adapters", "provider_features"]


def build_adapters() -> dict[str, ProviderAdapter]:
    """One stateless adapter per account kind, by kind."""
    adapters: list[ProviderAdapter] = [AnthropicApiKey(), OpenAIApiKey(), ChatGPTAccount()]
    return {adapter.kind: adapter for adapter in adapters}


def provider_features(
    *,
    settings: Callable[[], Settings],
    send_shadow: Callable[[Incoming, Account], Awaitable[bool]],
    keep_warm_after: float,
) -> list[Feature]:
    """The features a provider brings with it (ChatGPT's idle keep-warm)."""
    return [KeepWarm(settings=settings, send=send_shadow, warm_after=keep_warm_after)]
