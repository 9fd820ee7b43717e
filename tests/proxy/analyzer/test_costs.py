from __future__ import annotations

import pytest

from proxy.analyzer import Pricer, TurnRecord, analyze_records
from proxy.analyzer.costs import ANTHROPIC_MULTIPLIERS
from proxy.wire.usage import Usage

M = 1_000_000


def test_cards_come_from_the_price_table() -> None:
    card = Pricer().card("anthropic", "claude-sonnet-4-5")
    assert card is not None
    assert (
        card.input,
        card.cache_read,
        card.cache_write_5m,
        card.cache_write_1h,
        card.output,
    ) == pytest.approx((3, 0.3, 3.75, 6, 15))
    assert card.derived == ()
    openai = Pricer().card("openai", "gpt-5")
    assert openai is not None
    assert openai.cache_write_5m == openai.input == openai.cache_write_1h  # OpenAI bills no writes
    assert openai.derived == ()


def test_missing_cache_prices_are_derived_with_anthropics_multipliers() -> None:
    pricer = Pricer()
    card = pricer.card("anthropic", "claude-2.1")  # the table has no cache prices for it
    assert card is not None
    assert set(card.derived) == {"cache_read", "cache_write_5m", "cache_write_1h"}
    assert card.cache_read == pytest.approx(card.input * ANTHROPIC_MULTIPLIERS["read"])
    assert card.cache_write_5m == pytest.approx(card.input * 1.25)
    assert card.cache_write_1h == pytest.approx(card.input * 2)
    usage = Usage(
        input_tokens=1_000, cache_read_tokens=10_000, cache_write_tokens=2_000, cache_write_1h_tokens=2_000
    )
    assert pricer.price("anthropic", "claude-2.1", usage) == pytest.approx(
        (1_000 + 10_000 * 0.1 + 2_000 * 2) * card.input / M
    )


def test_long_context_tiers_apply_to_the_whole_turn() -> None:
    pricer = Pricer()
    small = pricer.price("anthropic", "claude-sonnet-4-5", Usage(input_tokens=100_000))
    large = pricer.price("anthropic", "claude-sonnet-4-5", Usage(input_tokens=300_000))
    assert small == pytest.approx(0.3)
    assert small is not None and large is not None
    assert large > 3 * small  # above 200k input the tier price applies


def test_unknown_models_are_not_priced() -> None:
    pricer = Pricer()
    assert pricer.card("anthropic", "claude-nonexistent-9") is None
    assert pricer.price("anthropic", None, Usage(input_tokens=1)) is None
    report = analyze_records(
        [
            TurnRecord(
                session_id="s",
                start=0.0,
                provider="anthropic",
                model="claude-nonexistent-9",
                usage=Usage(input_tokens=5),
            )
        ],
        source="headway",
        now=0.0,
    )
    assert report.costs.actual is None and report.totals.unpriced_turns == 1
    assert report.prices == []
