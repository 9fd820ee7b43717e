from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from proxy.features.pricing import estimate_cost
from proxy.wire.usage import Usage

# Counts stay below 200k input tokens: above that, genai-prices applies Anthropic's historical long-context tier.
TOKENS = 100_000


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pricing must never reach for the network (genai-prices can auto-update; we must not let it)."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("pricing tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _cost(provider: str, model: str, usage: Usage) -> float:
    cost = estimate_cost(provider, model, usage)
    assert cost is not None, f"{provider}/{model} should be priced"
    return cost


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-sonnet-4-5-20250929"),
        ("openai", "gpt-5"),
        ("openai", "gpt-5-codex"),
    ],
)
def test_known_model_costs_scale_with_tokens(provider: str, model: str) -> None:
    one = _cost(provider, model, Usage(input_tokens=TOKENS // 2, output_tokens=1_000))
    two = _cost(provider, model, Usage(input_tokens=TOKENS, output_tokens=2_000))

    assert one > 0
    assert two == pytest.approx(2 * one)


def test_sonnet_list_prices() -> None:
    # $3 / MTok input, $15 / MTok output.
    assert _cost("anthropic", "claude-sonnet-4-5", Usage(input_tokens=TOKENS)) == pytest.approx(0.3)
    assert _cost("anthropic", "claude-sonnet-4-5", Usage(output_tokens=TOKENS)) == pytest.approx(1.5)


@pytest.mark.parametrize(("provider", "model"), [("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-5")])
def test_cache_reads_are_cheaper_than_uncached_input(provider: str, model: str) -> None:
    uncached = _cost(provider, model, Usage(input_tokens=TOKENS))
    cached = _cost(provider, model, Usage(cache_read_tokens=TOKENS))

    assert 0 < cached < uncached
    assert cached == pytest.approx(uncached * 0.1)


def test_anthropic_cache_writes_cost_more_and_one_hour_writes_most() -> None:
    uncached = _cost("anthropic", "claude-sonnet-4-5", Usage(input_tokens=TOKENS))
    write_5m = _cost(
        "anthropic", "claude-sonnet-4-5", Usage(cache_write_tokens=TOKENS, cache_write_5m_tokens=TOKENS)
    )
    write_unknown_ttl = _cost("anthropic", "claude-sonnet-4-5", Usage(cache_write_tokens=TOKENS))
    write_1h = _cost(
        "anthropic", "claude-sonnet-4-5", Usage(cache_write_tokens=TOKENS, cache_write_1h_tokens=TOKENS)
    )

    assert write_5m == pytest.approx(uncached * 1.25)
    assert write_unknown_ttl == pytest.approx(write_5m)
    assert write_1h == pytest.approx(uncached * 2)


def test_mixed_usage_adds_up_its_parts() -> None:
    model = "claude-sonnet-4-5"
    mixed = Usage(
        input_tokens=1_000,
        output_tokens=2_000,
        cache_read_tokens=30_000,
        cache_write_tokens=5_000,
        cache_write_1h_tokens=4_000,
        cache_write_5m_tokens=1_000,
    )
    parts = [
        Usage(input_tokens=1_000),
        Usage(output_tokens=2_000),
        Usage(cache_read_tokens=30_000),
        Usage(cache_write_tokens=4_000, cache_write_1h_tokens=4_000),
        Usage(cache_write_tokens=1_000, cache_write_5m_tokens=1_000),
    ]

    assert _cost("anthropic", model, mixed) == pytest.approx(sum(_cost("anthropic", model, p) for p in parts))


def test_reasoning_tokens_are_part_of_output_not_extra() -> None:
    plain = _cost("openai", "gpt-5", Usage(output_tokens=10_000))
    with_reasoning = _cost("openai", "gpt-5", Usage(output_tokens=10_000, reasoning_tokens=8_000))

    assert with_reasoning == pytest.approx(plain)


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "no-such-model-9000"),
        ("anthropic", "claude-imaginary-1"),
        ("nowhere", "gpt-5"),
        ("openai", ""),
    ],
)
def test_unknown_model_or_provider_is_none(provider: str, model: str) -> None:
    assert estimate_cost(provider, model, Usage(input_tokens=TOKENS)) is None


def test_subscription_costs_nothing() -> None:
    usage = Usage(input_tokens=TOKENS, output_tokens=TOKENS)

    assert estimate_cost("openai", "gpt-5", usage, billing="subscription") == 0.0
    assert estimate_cost("openai", "unknown-model", usage, billing="subscription") == 0.0
    assert _cost("openai", "gpt-5", usage) > 0


def test_unknown_billing_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="billing"):
        estimate_cost("openai", "gpt-5", Usage(), billing="free")


def test_empty_usage_costs_zero() -> None:
    assert estimate_cost("anthropic", "claude-sonnet-4-5", Usage()) == 0.0


def test_price_at_a_given_time() -> None:
    usage = Usage(input_tokens=TOKENS)
    at = datetime(2025, 11, 1, tzinfo=UTC)

    assert estimate_cost("anthropic", "claude-sonnet-4-5", usage, at=at) == pytest.approx(0.3)


def test_pricing_starts_no_update_thread() -> None:
    estimate_cost("openai", "gpt-5", Usage(input_tokens=TOKENS))

    assert not [t for t in threading.enumerate() if t.name.startswith("genai_prices")]
