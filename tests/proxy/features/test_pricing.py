from __future__ import annotations

import socket
from typing import Any

import pytest

from proxy.features.pricing import estimate_cost
from proxy.wire.usage import Usage

# Counts stay below 200k input tokens: above that, Sonnet's long-context rates apply.
TOKENS = 100_000


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pricing never reaches for the network."""

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


def test_a_dated_snapshot_or_a_provider_prefix_finds_its_model() -> None:
    usage = Usage(input_tokens=TOKENS, output_tokens=TOKENS)
    base = _cost("anthropic", "claude-haiku-4-5", usage)
    assert _cost("anthropic", "claude-haiku-4-5-20251001", usage) == base
    assert _cost("anthropic", "anthropic/claude-haiku-4-5", usage) == base
    assert (
        estimate_cost("anthropic", "claude-haiku-4-50", usage) is None
    )  # a prefix of the name is not enough


def test_the_longest_matching_name_wins() -> None:
    usage = Usage(input_tokens=TOKENS, output_tokens=TOKENS)
    # gpt-5-mini: $0.25 in / $2 out; gpt-5: $1.25 / $10 — the mini must not be priced as gpt-5
    assert _cost("openai", "gpt-5-mini", usage) == pytest.approx(0.025 + 0.2)
    assert _cost("openai", "gpt-5-mini-2025-08-07", usage) == pytest.approx(0.025 + 0.2)
    assert _cost("openai", "gpt-5", usage) == pytest.approx(0.125 + 1.0)
    # Opus 4.5 costs a third of Opus 4.1
    assert _cost("anthropic", "claude-opus-4-5", usage) * 3 == pytest.approx(
        _cost("anthropic", "claude-opus-4-1-20250805", usage)
    )


def test_sonnet_long_context_rates_apply_to_the_whole_request_above_200k_input() -> None:
    below = _cost("anthropic", "claude-sonnet-4-5", Usage(input_tokens=200_000, output_tokens=1_000))
    above = _cost(
        "anthropic",
        "claude-sonnet-4-5",
        Usage(input_tokens=150_000, cache_read_tokens=60_000, output_tokens=1_000),
    )
    assert below == pytest.approx(200_000 * 3e-6 + 1_000 * 15e-6)
    assert above == pytest.approx(150_000 * 6e-6 + 60_000 * 0.6e-6 + 1_000 * 22.5e-6)
    # Haiku has no long-context tier
    assert _cost("anthropic", "claude-haiku-4-5", Usage(input_tokens=300_000)) == pytest.approx(0.3)


def test_openai_cached_input_has_its_own_rate_and_a_write_is_ordinary_input() -> None:
    assert _cost("openai", "gpt-4o", Usage(cache_read_tokens=TOKENS)) == pytest.approx(TOKENS * 1.25e-6)
    assert _cost("openai", "gpt-5", Usage(cache_write_tokens=TOKENS)) == _cost(
        "openai", "gpt-5", Usage(input_tokens=TOKENS)
    )
