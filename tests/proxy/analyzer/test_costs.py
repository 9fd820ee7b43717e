from __future__ import annotations

import pytest

from proxy.analyzer import Pricer, TurnRecord, analyze_records
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
    openai = Pricer().card("openai", "gpt-5")
    assert openai is not None
    assert openai.cache_write_5m == openai.input == openai.cache_write_1h  # OpenAI bills no writes


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
