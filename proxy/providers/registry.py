"""The adapter of every account kind, made once by whoever owns them (the engine)."""

from __future__ import annotations

from .anthropic import AnthropicApiKey
from .base import ProviderAdapter
from .chatgpt import ChatGPTAccount
from .openai import OpenAIApiKey

__all__ = ["build_adapters"]


def build_adapters() -> dict[str, ProviderAdapter]:
    """One stateless adapter per account kind, by kind."""
    adapters: list[ProviderAdapter] = [AnthropicApiKey(), OpenAIApiKey(), ChatGPTAccount()]
    return {adapter.kind: adapter for adapter in adapters}
