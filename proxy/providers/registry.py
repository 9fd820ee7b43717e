"""The adapter of every account kind, made once by whoever owns them (the engine)."""

from __future__ import annotations

from proxy.providers.anthropic import AnthropicApiKey
from proxy.providers.base import ProviderAdapter
from proxy.providers.chatgpt import ChatGPTAccount
from proxy.providers.chatgpt.keepwarm import KeepWarm
from proxy.providers.openai import OpenAIApiKey

__all__ = ["KeepWarm", "build_adapters"]


def build_adapters() -> dict[str, ProviderAdapter]:
    """One stateless adapter per account kind, by kind."""
    adapters: list[ProviderAdapter] = [AnthropicApiKey(), OpenAIApiKey(), ChatGPTAccount()]
    return {adapter.kind: adapter for adapter in adapters}
